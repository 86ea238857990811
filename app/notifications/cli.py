"""Email operator commands (registered on the ``codex`` CLI group)."""
