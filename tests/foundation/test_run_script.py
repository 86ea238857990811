"""``extensions.run_script``: EVALSHA on the calling thread's own connection, with redis-py's errors."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis as redis_lib

from app.extensions import run_script
from app.speed.connections import thread_connection

ECHO = "redis.call('SET', KEYS[1], ARGV[1]) return {redis.call('GET', KEYS[1]), #ARGV}"


def test_it_answers_what_the_script_object_answers(redis: redis_lib.Redis) -> None:
    script = redis.register_script(ECHO)
    assert run_script(script, ["k"], ["v", 2, 3]) == script(keys=["k"], args=["v", 2, 3]) == [b"v", 3]


def test_a_server_that_lost_the_script_gets_it_again(redis: redis_lib.Redis) -> None:
    script = redis.register_script(ECHO)
    assert run_script(script, ["k"], ["one"]) == [b"one", 1]
    redis.script_flush()  # (a restarted or failed-over server)
    assert run_script(script, ["k"], ["two"]) == [b"two", 1]
    assert run_script(script, ["k"], ["three"]) == [b"three", 1]  # and the connection is still in step


def test_script_errors_are_redis_errors_and_the_next_call_works(redis: redis_lib.Redis) -> None:
    failing = redis.register_script("return redis.call('INCR', KEYS[1])")
    redis.set("text", "not a number")
    connection = thread_connection(redis)
    with pytest.raises(redis_lib.ResponseError):
        run_script(failing, ["text"], [])
    assert run_script(redis.register_script(ECHO), ["k"], ["after"]) == [b"after", 1]
    assert thread_connection(redis) is connection and connection._sock is not None  # kept: still in step


def test_a_killed_connection_raises_once_then_reconnects(redis: redis_lib.Redis) -> None:
    script = redis.register_script(ECHO)
    assert run_script(script, ["k"], ["before"]) == [b"before", 1]
    redis.client_kill_filter(_id=_client_id(redis))
    with pytest.raises(redis_lib.ConnectionError):
        run_script(script, ["k"], ["lost"])
    assert run_script(script, ["k"], ["again"]) == [b"again", 1]


def test_each_thread_has_its_own_connection(redis: redis_lib.Redis) -> None:
    mine = thread_connection(redis)
    assert thread_connection(redis) is mine
    theirs: list[Any] = []
    thread = threading.Thread(target=lambda: theirs.append(thread_connection(redis)))
    thread.start()
    thread.join()
    assert theirs[0] is not mine


def _client_id(client: redis_lib.Redis) -> int:
    connection = thread_connection(client)
    connection.send_command("CLIENT", "ID")
    return int(connection.read_response())


def test_arguments_arrive_as_redis_py_would_send_them(redis: redis_lib.Redis) -> None:
    """hiredis packs the usual arguments (str, bytes, int, float): the script sees what
    ``Script.__call__`` (redis-py's own packer) gives it."""
    script = redis.register_script("return ARGV")
    args = ["text", "é", b"\xff\x00", 0, -12, 10**20, 1.5, 0.1, 1 / 3, 1e20]
    assert run_script(script, [], args) == script(keys=[], args=args)


def test_arguments_hiredis_does_not_pack_take_redis_pys_packer(redis: redis_lib.Redis) -> None:
    script = redis.register_script("return ARGV")
    assert run_script(script, [], [bytearray(b"raw"), memoryview(b"view")]) == [b"raw", b"view"]
    with pytest.raises(redis_lib.DataError):  # redis-py's refusal, as before
        run_script(script, [], [None])
    with pytest.raises(redis_lib.DataError):
        run_script(script, [], [True])
    assert run_script(script, [], ["after"]) == [b"after"]  # nothing was sent: still in step
