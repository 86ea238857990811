"""The identity fixtures (cheap hashing, recorded tasks) apply to the orgs tests too."""

from tests.identity.conftest import fast_passwords, limited_app, limited_client, recorded_tasks

__all__ = ["fast_passwords", "limited_app", "limited_client", "recorded_tasks"]
