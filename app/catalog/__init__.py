"""Public catalogue (api.md §8)."""
