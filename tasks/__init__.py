"""Celery tasks: thin wrappers that load a row by id, call a service, commit once."""
