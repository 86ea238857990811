"""app/speed/resp.py: the bytes ``pack`` writes are the ones redis-py's packer writes, and Redis
runs them."""

from __future__ import annotations

from typing import Any

import pytest
import redis as redis_lib
from redis.connection import Connection

from app.speed.resp import pack


@pytest.mark.parametrize(
    "args",
    [
        ("LPUSH", "webhooks", b"x" * 970),
        ("EVALSHA", "a" * 40, 1, "rl:webhook:ip:10.1.2.3", "ab12cd34.4711.99", 1000, 60_000, 1),
        ("SET", "clé", "värde ✓", "PX", 0),
        ("LPUSH", "big", b"\r\n" + b"y" * 200_000),  # (redis-py sends a large value as a part of its own)
        ("PING",),
        ("SET", "", b""),
        ("INCRBY", "n", -17),
    ],
)
def test_pack_writes_what_redis_py_writes(args: tuple[Any, ...]) -> None:
    assert pack(*args) == b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize("arg", [1.5, True, None, ["x"]])
def test_other_types_are_refused(arg: Any) -> None:
    with pytest.raises(TypeError):
        pack("SET", "k", arg)


def test_redis_runs_a_packed_command(redis: Any) -> None:
    client: redis_lib.Redis = redis
    pool: Any = client.connection_pool
    connection = pool.connection_class(**pool.connection_kwargs)
    try:
        connection.send_packed_command([pack("SET", "codex-resp-test", "värde", "EX", 60)])  # (a list of parts)
        assert connection.read_response() in (b"OK", "OK", True)
        assert client.get("codex-resp-test") in (b"v\xc3\xa4rde", "värde")
    finally:
        connection.disconnect()
        client.delete("codex-resp-test")
