"""Dashboard fixtures: the seeded two-org dataset and signed-in managers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.dashboard.seed import World, seed
from tests.identity.conftest import fast_passwords, recorded_tasks
from tests.identity.helpers import auth, signed_in

__all__ = ["fast_passwords", "recorded_tasks"]


@pytest.fixture()
def world(db_session: Any) -> World:
    return seed()


@pytest.fixture()
def owner_a(world: World) -> dict[str, str]:
    """Bearer headers of org A's owner."""
    return auth(signed_in(world.owner_a))
