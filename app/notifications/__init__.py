"""Transactional email: the outbox, templates, branding and the sending backends."""
