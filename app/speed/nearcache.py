"""A per-process copy of hot Redis keys that Redis itself keeps exact (server-assisted client caching).

Why: a warm authenticated request (``GET /auth/me``, stream issuance, a heartbeat's session) spends
about a third of its CPU on the one Redis round trip that reads the session entry and the view's
keys (socket syscalls, a context switch, Redis' own work). Those keys change rarely (login, logout,
a grant, a content edit) and are read thousands of times in between.

How it stays exact: each process opens one extra connection and asks Redis to tell it about every
change of a key under the tracked prefixes (``CLIENT TRACKING ON REDIRECT <itself> BCAST PREFIX
...`` then ``SUBSCRIBE __redis__:invalidate``; RESP2, Redis >= 6). It is a ``redis.Connection``
driven through redis-py's public API only: ``client_tracking_on`` on a single-connection client,
then the connection's ``send_command``, ``can_read`` and ``read_response`` (app/speed/README.md).
Redis sends an invalidation message when any client sets, deletes or expires such a key (scripts
included), and a ``null`` one on ``FLUSHDB``/``FLUSHALL``. Every lookup starts with ``sync()``,
which applies what that connection has already received (``can_read(0)``: one ``poll`` syscall
when nothing came). Redis queues the invalidation before it writes the writer's reply
(``beforeSleep``: the tracking broadcast, then the pending replies), so on one host a change
acknowledged to its writer is seen by every lookup that starts after the acknowledgement: a logout
or a refund acts at once in every process. (A flush is the exception: Redis queues its message
during the command, so it can trail the reply by the microseconds between two socket writes.)
Across hosts the window is the network's delivery jitter.

Fills race with invalidations: a value read before a change may arrive after the change's
invalidation was applied. So a caller takes ``sync()``'s epoch *before* its Redis read and passes
it to ``fill``, which does not store a key invalidated since then (nor anything after a flush or a
reconnect, or when more invalidations came in between than it remembers). Only those keys: with
BCAST every process hears of every tracked write, so a whole fill dropped for any change drops
more fills the more processes and users a deployment has (each one a later request gone cold).

When it is not used: until the connection is set up, after any error on it (everything is dropped
and the connection rebuilt), and when no ``PING`` sent in the last ``stale_after`` seconds has been
answered (a silently dead connection cannot hide changes for longer than that). Then every lookup is
a miss and the caller reads Redis as before. An entry also never outlives its key's Redis TTL (the
caller passes it) or ``max_age``.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import redis
import structlog

from app.speed.bounded import make_room

log = structlog.get_logger(__name__)


class Miss:
    """The type of ``MISS``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


MISS: Final = Miss()
"""``get``'s answer for a key this process does not hold (``None`` means: Redis has no such key)."""

_CHANNEL = b"__redis__:invalidate"
# How many of the latest invalidations ``fill`` can tell apart: a fill spans one round trip, in
# which a busy deployment applies a few dozen at most; beyond, the fill keeps nothing.
_CHANGES_KEPT = 256
_ERRORS = (OSError, redis.RedisError)  # what a lost or refused connection raises through redis-py


class NearCache:
    """This process's copy of the Redis keys under ``prefixes`` (see the module docstring).

    ``max_entries`` bounds memory (20,000 entries: a session entry is about 250 bytes, a ``/me``
    body about 1 KB, so a few tens of MB at most); when full, the oldest quarter is dropped
    (``app.speed.bounded``).
    ``max_age`` bounds how long an entry is kept without being read again from Redis: 300 s, as
    long as a session entry lives in Redis. (Exactness comes from Redis' reports, not from the age:
    a shorter one only sends a returning user's requests, a few a minute per process, back to
    Redis and off the fast path: with 30 s, most of them at 3000 users.)

    ``expire_early`` (prefix -> seconds): a copy of a key under that prefix is dropped that long
    before the key's Redis TTL runs out, for keys whose readers extend the TTL in Redis when they
    find little of it left (the access entries' sliding TTL): the next lookup then misses while
    the key still exists, and its read from Redis extends it."""

    def __init__(
        self,
        url: str,
        prefixes: Sequence[str],
        *,
        max_age: float = 300.0,
        max_entries: int = 20_000,
        ping_interval: float = 0.25,
        stale_after: float = 1.0,
        expire_early: Mapping[str, float] | None = None,
    ) -> None:
        self.url = url
        self.prefixes = tuple(prefixes)
        self.max_age = max_age
        self.max_entries = max_entries
        self.ping_interval = ping_interval
        self.stale_after = stale_after
        self.expire_early = tuple((expire_early or {}).items())
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[bytes | None, float]] = {}
        self._epoch = 0
        # What each of the latest epochs invalidated (None: everything), for ``fill``; a fill
        # from before the oldest one remembered, or before ``_floor`` (a reset), keeps nothing.
        self._changes: deque[tuple[int, frozenset[str] | None]] = deque(maxlen=_CHANGES_KEPT)
        self._floor = 0
        self._usable_until = 0.0  # monotonic; lookups miss from then on
        self._client: redis.Redis | None = None  # a single-connection client: the listening connection
        self._conn: Any = None  # its ``redis.Connection`` (subscribed: only send_command/read_response)
        self._pings: deque[float] = deque()  # send times of unanswered PINGs
        self._last_ping = 0.0
        self._pid = 0
        self._closed = False
        self._disabled = False  # the server refused tracking: never try again
        self._thread: threading.Thread | None = None
        # A forked child starts afresh: the parent's lock may have been held by its listener at
        # the fork, and its connection, entries and thread are not the child's.
        here = weakref.ref(self)

        def after_fork_in_child() -> None:
            cache = here()
            if cache is not None:
                cache._after_fork()

        os.register_at_fork(after_in_child=after_fork_in_child)

    # ---- lookups (request threads) -------------------------------------------------------------

    def sync(self) -> int | None:
        """Apply the invalidations received so far. The epoch to pass to ``fill`` (take it before
        reading Redis), or None when the cache cannot be used now (every ``get`` would be stale)."""
        if self._pid != os.getpid():
            self._start()  # first use in this process (gunicorn and Celery fork after import)
        if time.monotonic() >= self._usable_until:
            return None
        # Under the lock: the listener thread may be between reading a message and applying it,
        # and an empty connection only means "nothing new" once no drain is in progress.
        with self._lock:
            conn = self._conn
            if conn is None:
                return None
            try:
                pending = conn.can_read(0)
            except _ERRORS as exc:
                self._lost(exc)
                return None
            if pending:
                self._drain()
                if time.monotonic() >= self._usable_until:
                    return None
            return self._epoch

    def get(self, key: str) -> bytes | Miss | None:
        """The value held for ``key`` (``None``: Redis had no such key), or ``MISS``. Call ``sync()``
        first, and only use the answer when it returned an epoch."""
        entry = self._entries.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return MISS
        return entry[0]

    def fill(self, epoch: int, items: Iterable[tuple[str, bytes | None, float | None]]) -> None:
        """Keep ``(key, value, ttl_seconds)`` read from Redis after ``sync()`` returned ``epoch``;
        nothing is kept when an invalidation or a reconnect came in between. ``ttl_seconds``: the
        key's remaining Redis TTL (None: no expiry, or no such key)."""
        now = time.monotonic()
        early = self.expire_early
        with self._lock:
            if now >= self._usable_until:
                return
            if epoch != self._epoch:
                changed = self._changed_since(epoch)
                if changed is None:
                    return
                items = [item for item in items if item[0] not in changed]
            entries = self._entries
            make_room(entries, self.max_entries)  # (the oldest go; a miss costs one round trip)
            for key, value, ttl in items:
                if ttl is not None and early:
                    ttl -= next((seconds for prefix, seconds in early if key.startswith(prefix)), 0.0)
                if ttl is not None and ttl <= 0:
                    continue
                age = self.max_age if ttl is None else min(self.max_age, ttl)
                entries[key] = (value, now + age)

    def evict(self, keys: Iterable[str]) -> None:
        """Drop ``keys`` here at once (Redis' message follows; this only saves waiting for it)."""
        with self._lock:
            dropped = frozenset(keys)
            self._note_change(dropped)
            for key in dropped:
                self._entries.pop(key, None)

    def wait_usable(self, timeout: float) -> bool:
        """Start listening in this process and wait until lookups can hit (start-up, tests)."""
        deadline = time.monotonic() + timeout
        while self.sync() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._reset()

    @property
    def usable(self) -> bool:
        return time.monotonic() < self._usable_until

    # ---- the connection (the listener thread, under the lock) -----------------------------------

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._thread = None
        # (Closes the child's copy of the descriptor only: redis-py shuts a socket down only in
        # the process that opened it, so the parent's connection stays up.)
        self._reset()
        self._pid = 0

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid() or self._closed:
                return
            self._pid = os.getpid()
            if self._disabled:
                return
            self._thread = threading.Thread(target=self._run, name="codex-nearcache", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        backoff = 0.0
        while not self._closed and not self._disabled and self._pid == os.getpid():
            conn = self._conn
            if conn is None:
                time.sleep(backoff)  # none the first time; then growing, so a failing Redis is not hammered
                backoff = min(max(backoff * 2, 0.1), 5.0)
                try:
                    self._connect()
                except _ERRORS as exc:
                    log.warning("nearcache.connect_failed", error=str(exc))
                continue
            try:
                readable = conn.can_read(self.ping_interval)
            except _ERRORS:
                readable = True  # the drain below meets the error under the lock, and resets
            with self._lock:
                if self._conn is not conn:
                    # Dropped by another thread while we waited (and possibly reopened by
                    # ``can_read``, which reconnects a closed connection): not ours any more.
                    conn.disconnect()
                    continue
                if readable:
                    self._drain()
                self._keep_alive(time.monotonic())
                if self.usable:
                    backoff = 0.0

    def _connect(self) -> None:
        # redis-py sets the connection up as ``url`` says (address, AUTH, SELECT) and names it
        # (for CLIENT LIST); RESP2, so that invalidations arrive as Pub/Sub messages.
        client = redis.Redis.from_url(
            self.url,
            protocol=2,
            single_connection_client=True,
            client_name="codex-nearcache",
            socket_connect_timeout=2,
            socket_timeout=2,
        )
        try:
            try:
                client.client_tracking_on(clientid=client.client_id(), bcast=True, prefix=self.prefixes)
            except redis.ResponseError as exc:
                self._disabled = True  # Redis < 6, or tracking not allowed: plain Redis reads
                log.warning("nearcache.disabled", error=str(exc))
                raise
            conn = client.connection
            if conn is None:
                raise redis.ConnectionError("no connection")
            conn.send_command("SUBSCRIBE", _CHANNEL)
            conn.read_response()  # the subscription's confirmation
        except BaseException:
            client.close()
            raise
        with self._lock:
            if self._closed:
                client.close()
                return
            # Whatever changed while we were not listening is unknown: start empty, and refuse fills
            # of reads that began before this point.
            self._reset()
            self._client, self._conn = client, conn
            self._keep_alive(time.monotonic())  # usable once this first PING is answered

    def _keep_alive(self, now: float) -> None:
        if self._pings and now - self._pings[0] > self.stale_after:
            log.warning("nearcache.unresponsive")
            self._reset()
            return
        if now - self._last_ping >= self.ping_interval and self._conn is not None:
            try:
                self._conn.send_command("PING")
            except _ERRORS as exc:
                self._lost(exc)
                return
            self._pings.append(now)
            self._last_ping = now

    def _drain(self) -> None:
        """Apply every message already received (``can_read(0)``: buffered, or on the socket)."""
        conn = self._conn
        if conn is None:
            return
        try:
            # Checked first: what the listener saw arrive may have been applied by a lookup since.
            while conn.can_read(0):
                self._apply(conn.read_response())
        except _ERRORS as exc:
            self._lost(exc)

    def _apply(self, message: Any) -> None:
        if isinstance(message, list) and len(message) == 3 and message[0] == b"message" and message[1] == _CHANNEL:
            keys = message[2]
            if keys is None:  # FLUSHDB / FLUSHALL
                self._drop_all()
            else:
                names = frozenset(key.decode() for key in keys)
                self._note_change(names)
                for name in names:
                    self._entries.pop(name, None)
        elif isinstance(message, list) and message and message[0] == b"pong" and self._pings:
            # Everything Redis sent before this PONG has been applied: a change acknowledged
            # before that PING was sent is known here.
            sent = self._pings.popleft()
            if time.monotonic() - sent > self.stale_after:
                # Answered too late: lookups were refused meanwhile, and what is held goes, as
                # ``_keep_alive`` would have dropped it had the listener run in that window.
                self._drop_all()
            self._usable_until = sent + self.stale_after

    def _drop_all(self) -> None:
        """Every key may have changed: nothing held, and no fill from before keeps anything."""
        self._note_change(None)
        self._entries.clear()

    def _note_change(self, keys: frozenset[str] | None) -> None:
        """A new epoch: ``keys`` changed (None: every key)."""
        self._epoch += 1
        self._changes.append((self._epoch, keys))

    def _changed_since(self, epoch: int) -> frozenset[str] | None:
        """The keys invalidated after ``epoch``; None when that is not known to be a few keys (a
        flush, a reset, or more epochs since than are remembered)."""
        changes = self._changes
        if epoch < self._floor or not changes or changes[0][0] > epoch + 1:
            return None
        changed: set[str] = set()
        for number, keys in reversed(changes):
            if number <= epoch:
                break
            if keys is None:
                return None
            changed |= keys
        return frozenset(changed)

    def _lost(self, exc: BaseException) -> None:
        log.warning("nearcache.connection_lost", error=str(exc))
        self._reset()

    def _reset(self) -> None:
        """Forget everything and drop the connection (the listener thread opens a new one)."""
        self._entries.clear()
        self._epoch += 1
        self._floor = self._epoch  # (a fill from before it keeps nothing: changes went unheard)
        self._changes.clear()
        self._usable_until = 0.0
        self._pings.clear()
        self._last_ping = 0.0
        conn, client, self._conn, self._client = self._conn, self._client, None, None
        if conn is not None:
            conn.disconnect()
        if client is not None:
            client.close()
