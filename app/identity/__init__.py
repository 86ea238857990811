"""Accounts, credentials, sessions and one-time tokens."""
