"""Content items (sellable, publishable) and the public catalogue."""
