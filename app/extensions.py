"""Extension objects and their set-up: Redis clients, the near cache, mail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
import redis
import structlog
from flask import Flask, current_app
from flask_mail import Mail
from redis.commands.core import Script

from app import keys
from app.speed.connections import thread_connection
from app.speed.nearcache import NearCache

log = structlog.get_logger(__name__)

mail = Mail()


def redis_client(url: str) -> redis.Redis:
    # Short timeouts: every Redis use degrades gracefully (security.md §13/§14).
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=30)


def redis_script(client: redis.Redis, source: str) -> Script:
    """``client``'s ``Script`` for the Lua ``source``, built once (building one hashes the source)
    and kept on the client, so it lives and dies with it. Calls use EVALSHA (EVAL after a flush).
    The one way the application gets a ``Script``; hot callers pass it to ``run_script``."""
    scripts: dict[str, Script] = client.__dict__.setdefault("_codex_scripts", {})
    script = scripts.get(source)
    if script is None:
        script = scripts[source] = client.register_script(source)
    return script


def run_script(script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
    """``script(keys=keys, args=args)`` for the hottest calls: one EVALSHA on this thread's own
    connection to the script's Redis, without redis-py's command layer and pool (its retry
    wrapper, observability hooks, argument filters and the pool's per-checkout socket poll cost
    about half of a warm heartbeat's Redis call in this process). Errors are redis-py's own: a
    connection that failed is dropped (the next call reconnects), and a server that lost the
    script (restart, SCRIPT FLUSH) gets it through ``Script.__call__``, which loads it."""
    held: Any = script  # (the types-redis stubs lack Script's attributes)
    client = held.registered_client
    connection = thread_connection(client)
    try:
        packed = _pack(client, ("EVALSHA", held.sha, len(keys), *keys, *args))
        if packed is None:
            connection.send_command("EVALSHA", held.sha, len(keys), *keys, *args)
        else:
            connection.send_packed_command([packed])
        return connection.read_response()
    except redis.exceptions.NoScriptError:
        pass
    except redis.exceptions.ResponseError:
        raise  # an error reply, read whole: the connection is still in step
    except BaseException:
        connection.disconnect()  # (a timeout or a failure mid-reply: the stream is out of step)
        raise
    return script(keys=keys, args=args)


def _pack(client: redis.Redis, command: tuple[Any, ...]) -> bytes | None:
    """``command`` in the Redis protocol, by hiredis at once; None when redis-py must pack it.

    redis-py's packer (``Connection.send_command``) runs its encoder on every argument in Python:
    about 25 µs for a heartbeat's 36 arguments, against 3 µs for ``hiredis.pack_command``, which
    gives the same bytes for what the scripts pass (str as UTF-8, bytes, int, float as ``repr``).
    Anything else (a bool, None, a bytearray: redis-py refuses or converts them), or a client
    whose encoding is not UTF-8, takes redis-py's packer, and its answers and errors."""
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("encoding", "utf-8") != "utf-8" or kwargs.get("encoding_errors", "strict") != "strict":
        return None
    try:
        return hiredis.pack_command(command)
    except (TypeError, ValueError):  # (UnicodeEncodeError included)
        return None


# The keys the near cache holds (app/keys.py says which): only what ``guards.with_session_read``
# fetches is ever filled; the prefixes say which changes Redis reports.
NEAR_CACHE_PREFIXES = keys.NEAR_CACHE_PREFIXES


def near_cache_for(app: Flask) -> NearCache | None:
    """The process-local copy of the session read's keys (app/speed/nearcache.py), or None when
    NEAR_CACHE_ENABLED is off or Redis is reached over TLS (the listener needs a plain socket)."""
    url = app.config["REDIS_URL"]
    if not app.config["NEAR_CACHE_ENABLED"] or not url.startswith(("redis://", "unix://")):
        return None
    return NearCache(url, NEAR_CACHE_PREFIXES, expire_early=keys.NEAR_CACHE_EXPIRE_EARLY)


def get_near_cache() -> NearCache | None:
    near: NearCache | None = current_app.extensions.get("near_cache")
    return near


def get_redis() -> redis.Redis:
    """The cache/session/rate-limit Redis (``REDIS_URL``)."""
    client: redis.Redis = current_app.extensions["redis"]
    return client
