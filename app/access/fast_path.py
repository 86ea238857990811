"""Warm heartbeats and stream URLs answered below Flask.

``PUT /api/v1/content/{id}/progress`` is the API's most frequent request (a player sends one
every few seconds for as long as it plays) and ``GET /api/v1/content/{id}/stream`` starts every
playback. Warm, neither needs the database: the session, the access entry and the content's
generation token are in the process's near cache (app/speed/nearcache.py), the content's facts in its
snapshot, and a heartbeat is one Lua call that checks access and applies the write. Flask's
request context, routing, hooks and response object cost about as much again as that work, so
this WSGI middleware answers exactly those warm cases itself, with the functions the routes use
(``progress.record_warm_heartbeat``, ``hls.stream_answer``, ``service.decide_playable``), and
hands every other request to Flask untouched (a body it read is put back).

It answers only when the outcome is known to be the route's success:

- the exact path with a canonical content UUID;
- ``Authorization: Bearer`` (a cookie needs the CSRF check) whose session entry is live and not
  due to slide, from this process's near cache, or else read from Redis and kept there: with
  thousands of users, each process meets a returning user first without its entry (a stream URL
  then starts in its own process as often as not). A heartbeat reads the session alone
  (``sessions.bearer_principal``; its script needs the user's keys); a stream URL reads it with
  the access entry, the content's token and the limits in one call, the route's own read
  (``sessions.cold_bearer_principal``);
- heartbeat: a JSON object body of at most 4 KiB that ``fast_progress`` takes as it stands, the
  content's snapshot in this process, and a script answer of applied/ignored;
- stream: a query string ``fast_stream_args`` takes, the access entry and generation token held by
  the near cache, a snapshot of that generation, access granted and the media ready.

With ``RATELIMIT_ENABLED`` the route's limits (app/ratelimit, the rules declared on the route
method) are counted here, once: a heartbeat's in its script (``limits``), a stream URL's in one
limiter call right before the answer (when warm, its only Redis call). A refused request is
answered 429 here, in the limiter's shape; a request counted here and then handed to Flask
carries the outcome in the environ (``ratelimit.ENVIRON_KEY``), so Flask does not count it again.

Anything else (a cold cache, a stale snapshot, a denial, a bad body or query, an error) is the
route's to answer, so every error and its shape come from one implementation. The answers carry
the headers ``app.http._finish`` adds (``http.plain_api_headers``) and count in the same request
metric and log line. tests/access/test_fast_path.py checks both paths give the same answers.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import redis
from flask import Flask
from werkzeug.datastructures import MultiDict

from app import ratelimit
from app.access import hls, progress, service
from app.access.cache import access_cache_key
from app.access.lua import source
from app.access.schemas import fast_progress, fast_stream_args
from app.content.cache import gen_key
from app.extensions import redis_script, run_script
from app.identity import sessions
from app.speed import answer
from app.speed.nearcache import Miss, NearCache

_PATH = re.compile(r"/api/v1/content/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/(progress|stream)")
# The routes' rules: the request metric's label.
HEARTBEAT_ENDPOINT = "/api/v1/content/<content_id>/progress"
STREAM_ENDPOINT = "/api/v1/content/<content_id>/stream"
# A stream URL whose access entry or generation token this process does not hold: both keys and
# their remaining lifetimes (for the near cache), read after the limits in one call; the access
# entry is extended when little of its TTL is left (ARGV[1]: now, ms; the sliding TTL of
# app.access.service), so an entry in use does not expire under its viewers.
_READ_KEYS_LUA = ratelimit.guard(
    service.ACCESS_LUA_CONSTANTS
    + source("refresh")
    + "local raw, pttl = redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])\n"
    "if raw then pttl = refresh_access(KEYS[1], raw, tonumber(ARGV[1]), pttl) end\n"
    "return {raw, pttl, redis.call('GET', KEYS[2]), redis.call('PTTL', KEYS[2])}"
)
MAX_BODY = 4096  # a heartbeat is about 100 bytes; anything bigger is the route's (413 and all)


class FastPath(answer.FastPath):
    """WSGI middleware in front of ``app.wsgi_app`` (installed by ``install``)."""

    def __init__(self, app: Flask, wsgi_app: answer.WsgiApp) -> None:
        super().__init__(app, wsgi_app)
        # Requests answered here (tests, and operators who wonder)
        self.heartbeats = 0
        self.streams = 0

    def reply(self, environ: dict[str, Any]) -> answer.Answer | None:
        match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None:
            return None
        method, action = environ.get("REQUEST_METHOD"), match.group(2)
        if method == "PUT" and action == "progress":
            return self._heartbeat(environ, match.group(1))
        if method == "GET" and action == "stream":
            return self._stream(environ, match.group(1))
        return None

    # ---- the two answers ---------------------------------------------------------------------

    def _heartbeat(self, environ: dict[str, Any], content_id: str) -> answer.Answer | None:
        started = time.perf_counter()
        caller = self._caller(environ, from_redis=True)
        if caller is None or environ.get("HTTP_TRANSFER_ENCODING"):
            return None
        principal, _near, now = caller
        length = environ.get("CONTENT_LENGTH", "")
        if (
            _mimetype(environ.get("CONTENT_TYPE", "")) != "application/json"
            or not length.isdigit()
            or not 0 < int(length) <= min(MAX_BODY, _body_limit(self.app.config))
        ):
            return None
        body = environ["wsgi.input"].read(int(length))
        environ["wsgi.input"] = io.BytesIO(body)  # the route reads it again if the answer is not ours
        try:
            data = fast_progress(json.loads(body))
        except ValueError:  # (UnicodeDecodeError and JSONDecodeError included)
            return None
        if data is None:
            return None
        heartbeat = progress.normalise(
            data["position_seconds"], data["duration_seconds"], data["completed"], data["client_ts"], now
        )
        limits = self._limits(environ, str(principal.user_id), "PUT", HEARTBEAT_ENDPOINT)
        try:
            outcome, counted = progress.record_warm_heartbeat(
                self.app.extensions["redis"],
                user_id=principal.user_id,
                content_id=uuid.UUID(content_id),
                heartbeat=heartbeat,
                now=now,
                limits=limits,
            )
        except Exception:  # Redis trouble and the rest: the route settles it (and logs it)
            return None
        if counted is not None and not counted.allowed:
            return self._refuse(environ, principal, counted, HEARTBEAT_ENDPOINT, started)
        if outcome is None:
            if counted is not None:
                environ[ratelimit.ENVIRON_KEY] = counted  # (the route must not count it again)
            return None
        self.heartbeats += 1
        limited = counted.headers() if counted is not None else []
        who = str(principal.user_id)
        return answer.answer(self.app.config, environ, who, "204 NO CONTENT", limited, b"", HEARTBEAT_ENDPOINT, started)

    def _stream(self, environ: dict[str, Any], content_id: str) -> answer.Answer | None:
        started = time.perf_counter()
        query = environ.get("QUERY_STRING", "")
        args = fast_stream_args(MultiDict(parse_qsl(query, keep_blank_values=True)) if query else MultiDict())
        if args is None:
            return None
        item = uuid.UUID(content_id)
        snapshot = service.cached_snapshot(item)
        if snapshot is None:
            return None
        caller = self._caller(environ)
        counted: ratelimit.Outcome | None = None
        raw_reason: bytes | Miss | None
        raw_gen: bytes | Miss | None
        if caller is None:  # this process does not hold the session: one call reads it all
            cold = self._cold_stream(environ, item)
            if cold is None:
                return None
            principal, counted, raw_reason, raw_gen = cold
            limits = None
        else:
            principal, near, _now = caller
            access_key, content_gen_key = access_cache_key(principal.user_id, item), gen_key(item)
            limits = self._limits(environ, str(principal.user_id), "GET", STREAM_ENDPOINT)
            raw_reason, raw_gen = near.get(access_key), near.get(content_gen_key)
            if isinstance(raw_reason, Miss) or isinstance(raw_gen, Miss):
                # Not held here (a near-cache entry lives no longer than its Redis key; the access
                # entry's is 60 s): read both with the limits, in the one call a warm stream URL makes
                # anyway, and keep them for the next request.
                read = self._read_keys(near, access_key, content_gen_key, limits)
                if read is None:
                    return None
                counted, raw_reason, raw_gen = read
                if counted is not None and not counted.allowed:
                    return self._refuse(environ, principal, counted, STREAM_ENDPOINT, started)
                if limits is not None:
                    environ[ratelimit.ENVIRON_KEY] = counted  # (if the route answers, it must not count again)
                    limits = None
        reason = service.decode_reason(raw_reason)
        if reason is None or snapshot.gen != service.gen_of(raw_gen):
            return None
        meta = snapshot.meta
        try:
            decision = service.decide_playable(reason, meta)
        except Exception:  # not visible to the caller: the route's 404
            return None
        if not decision.has_access or not meta.media_ready:
            return None
        if limits is not None:  # (the only Redis call of a warm stream URL)
            counted = ratelimit.check(self.app.extensions["redis"], limits)
            if counted is not None and not counted.allowed:
                return self._refuse(environ, principal, counted, STREAM_ENDPOINT, started)
        with self.app.app_context():  # (the token secret, the public URL and storage are the app's)
            body = hls.stream_answer(meta, principal.user_id, args["expires_in"]).encode()
        self.streams += 1
        who = str(principal.user_id)
        return answer.json_answer(self.app.config, environ, who, body, counted, STREAM_ENDPOINT, started)

    def _cold_stream(
        self, environ: dict[str, Any], item: uuid.UUID
    ) -> tuple[sessions.Principal, ratelimit.Outcome | None, bytes | None, bytes | None] | None:
        """A stream URL whose session this process does not hold (a returning user's first
        request in it): the session, the access entry, the content's token and the limits in one
        call, as the route's read makes it (``sessions.cold_bearer_principal``), kept in the near
        cache. The principal, the limits' outcome (refused: the route answers the 429 it carries)
        and both raw values; None when the route must answer, with the outcome in the environ
        when the limits were counted."""
        near: NearCache | None = self.app.extensions.get("near_cache")
        authorization = environ.get("HTTP_AUTHORIZATION")
        if near is None or not authorization:
            return None
        access_key = access_cache_key("{user}", item)
        content_gen_key = gen_key(item)
        bound = self._limits(environ, "{user}", "GET", STREAM_ENDPOINT)  # (the script fills the user in)
        limits = (list(bound.names), bound.args()) if bound is not None else None
        client = self.app.extensions["redis"]
        now = datetime.now(UTC)
        cold = sessions.cold_bearer_principal(near, client, authorization, now, [access_key, content_gen_key], limits)
        if cold is None:
            return None
        principal, read = cold
        counted = ratelimit.Outcome.from_reply(read.limited) if read.limited else None
        if counted is not None:
            environ[ratelimit.ENVIRON_KEY] = counted  # (if the route answers, it must not count again)
            if not counted.allowed:
                return None  # (the route answers the 429 the outcome carries)
        if principal is None or read.fetched is None:
            return None
        user = str(principal.user_id)
        fetched = read.fetched
        return principal, counted, fetched.get(access_key.replace("{user}", user)), fetched.get(content_gen_key)

    def _read_keys(
        self, near: NearCache, access_key: str, content_gen_key: str, limits: ratelimit.Bound | None
    ) -> tuple[ratelimit.Outcome | None, bytes | None, bytes | None] | None:
        """The access entry and generation token from Redis, with ``limits`` counted in the same
        call (refused: the values are None), kept in the near cache; None on a Redis error (the
        route then settles the request, and counts it)."""
        epoch = near.sync()  # (before the read: a change in between then keeps nothing)
        names, args = limits.tail() if limits is not None else ([], [0])
        client = self.app.extensions["redis"]
        try:
            reply = run_script(
                redis_script(client, _READ_KEYS_LUA),
                [access_key, content_gen_key, *names],
                [time.time_ns() // 1_000_000, *args],
            )
        except redis.RedisError:
            return None
        counted, read = ratelimit.split(reply)
        if read is None:
            return counted, None, None
        raw_reason, reason_ttl, raw_gen, gen_ttl = read
        if epoch is not None:
            near.fill(epoch, [(access_key, raw_reason, _ttl(reason_ttl)), (content_gen_key, raw_gen, _ttl(gen_ttl))])
        return counted, raw_reason, raw_gen

    # ---- shared ------------------------------------------------------------------------------

    def _limits(self, environ: dict[str, Any], user_id: str, method: str, rule: str) -> ratelimit.Bound | None:
        """The route's rate limits for this caller (None when limits are off)."""
        if not self.app.config["RATELIMIT_ENABLED"]:
            return None
        return ratelimit.bind(self.rules(method, rule), environ.get("REMOTE_ADDR") or "unknown", user_id)

    def _refuse(
        self,
        environ: dict[str, Any],
        principal: sessions.Principal,
        counted: ratelimit.Outcome,
        endpoint: str,
        started: float,
    ) -> answer.Answer:
        """The limiter's 429, as the route would answer it."""
        self.refused += 1
        return answer.refusal(self.app.config, environ, str(principal.user_id), counted, endpoint, started)

    def _caller(
        self, environ: dict[str, Any], *, from_redis: bool = False
    ) -> tuple[sessions.Principal, NearCache, datetime] | None:
        """The bearer's principal from the near cache (``from_redis``: else from Redis), when
        nothing else needs the route first."""
        near: NearCache | None = self.app.extensions.get("near_cache")
        authorization = environ.get("HTTP_AUTHORIZATION")
        if near is None or not authorization:
            return None
        now = datetime.now(UTC)
        principal = (
            sessions.bearer_principal(near, self.app.extensions["redis"], authorization, now)
            if from_redis
            else sessions.warm_bearer_principal(near, authorization, now)
        )
        return None if principal is None else (principal, near, now)


def _ttl(pttl: int) -> float | None:
    """A key's remaining lifetime for the near cache: None when it has no expiry or does not exist."""
    return pttl / 1000 if pttl >= 0 else None


def _mimetype(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _body_limit(config: Any) -> int:
    limit = config.get("MAX_CONTENT_LENGTH")
    return int(limit) if limit else MAX_BODY


def install(app: Flask) -> None:
    """Put the fast path in front of Flask (inside any proxy fix-up, so ``REMOTE_ADDR`` is the client)."""
    app.wsgi_app = FastPath(app, app.wsgi_app)  # type: ignore[method-assign]
