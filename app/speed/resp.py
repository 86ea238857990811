"""One Redis command in RESP, the protocol's wire form, for redis-py's ``Connection.send_packed_command``.

Why: redis-py's packer runs every argument through its ``Encoder`` (a type test and an encode
each) before hiredis joins them; for the two commands of a webhook delivery (the limiter's
EVALSHA, the task message's LPUSH) that is ~8 us of CPU, a tenth of what the delivery's own
Python costs besides the INSERT. The wire form itself is the protocol's, not redis-py's: an array
of bulk strings, ``*<count>\\r\\n`` then ``$<length>\\r\\n<bytes>\\r\\n`` per argument
(https://redis.io/docs/latest/develop/reference/protocol-spec/). tests/foundation/test_resp.py
compares it with redis-py's ``Connection.pack_command``.
"""

from __future__ import annotations


def pack(*args: bytes | str | int) -> bytes:
    """``args`` as one command (send it as ``[pack(...)]``: redis-py iterates what it is given):
    bytes as they are, str in UTF-8 (redis-py's default encoding), int in decimal. Anything else
    (a float, a bool) is a TypeError: redis-py's own packer spells those, so the caller keeps it."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data: bytes
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        else:
            raise TypeError(f"cannot pack a {type(arg).__name__} argument")
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)
