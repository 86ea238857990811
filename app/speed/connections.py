"""One Redis connection per thread and process, for the hot calls that skip redis-py's command
layer and pool (``extensions.run_script``, ``publisher.RedisTaskPublisher``).

Made like the pool's (``connection_class(**connection_kwargs)``, public attributes of redis-py's
``ConnectionPool``), kept on the client object so it lives and dies with it, one per thread so it
is never shared mid-command, and made again in a forked child (the pid is checked).
tests/foundation/test_run_script.py checks all three.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import redis

_ATTRIBUTE = "_codex_thread_connections"


def thread_connection(client: redis.Redis) -> Any:
    """This thread's connection to ``client``'s server (a new one in a forked child)."""
    local: threading.local = client.__dict__.get(_ATTRIBUTE) or client.__dict__.setdefault(
        _ATTRIBUTE, threading.local()
    )
    held = getattr(local, "connection", None)
    if held is None or held[0] != os.getpid():
        pool: Any = client.connection_pool
        held = local.connection = (os.getpid(), pool.connection_class(**pool.connection_kwargs))
    return held[1]
