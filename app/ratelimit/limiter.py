"""The limiter: one Redis call per request for every limit that applies, and the Flask hooks.

``before_request`` (registered right after the request id, before the route pre-checks and the
body hooks, so 429 comes before 413/415/INVALID_JSON) finds the request's rules
(``rules.rules_for_request``), its client key (IP, or the user when signed in), and checks them all
in one script call; a refused request is answered 429 at once. Three kinds of request send the
limits inside a round trip they make anyway, so the limiter costs no call of its own:

- a view whose session read goes to Redis (``guards.with_session_read``: ``/auth/me``, the
  stream URL): identity runs the limits in the session script (``Pending`` is handed to the
  ``rate_limit_identity`` function identity registers); with the session in the near cache, the
  limiter's call is the request's only one;
- a view marked ``rides_along`` (the heartbeat): the limits are left pending, and the view's own
  script checks them first (``take`` / ``settle_taken``, ``guard``). If the view never gets there
  (401, a bad body), ``after_request`` checks them then, and a refused attempt still answers 429;
- app/access/fast_path.py counts below Flask; a request it hands over carries the outcome in the
  WSGI environ (``ENVIRON_KEY``) and is not counted again.

Every limited response carries ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset``; 429 adds
``Retry-After`` and the ``RATE_LIMITED`` body with ``details.retry_after``. If Redis cannot be
reached the request goes through and ``ratelimit.unavailable`` is logged at WARNING.
``RATELIMIT_ENABLED=false`` registers no hook at all.

Every attempt counts, whatever its answer (401, 400, 403 ...), and each counts once. A refused
attempt (429) is not logged: it consumes no budget, neither of the limit it exceeded nor of the
request's other limits (login's per-IP budget is not spent by attempts its per-email limit
refuses), so a client that keeps trying is admitted again as soon as its window has room, and no
window ever holds more than the limit (the spec allows the limit plus one).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import redis
import structlog
from flask import Flask, Response, current_app, g, request

from app import errors, keys
from app.extensions import redis_script, run_script
from app.http import view_option
from app.ratelimit.rules import Key, Rule, rules_for_request

log = structlog.get_logger(__name__)

ENVIRON_KEY = "codex.ratelimit"
"""The WSGI environ entry of a request already counted (app/access/fast_path.py): its ``Outcome``."""

_RIDES_OPTION = "_codex_ratelimit_rides"


def _lua(name: str) -> str:
    return files(__package__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


FRAGMENT = _lua("ratelimit")
"""Defines ``rate_limit(names, a0)`` (the file's header: arguments and answer), for scripts that
check limits along with their own work."""
_CHECK_LUA = FRAGMENT + _lua("check")
_GUARD_TAIL = _lua("guard")


def guard(script: str) -> str:
    """``script`` preceded by the limits, in one script: ``guard.lua`` says how the arguments
    are laid out (``Bound.tail`` appends the limiter's) and what comes back (``split``)."""
    return f"{FRAGMENT}local function guarded()\n{script}\nend\n{_GUARD_TAIL}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """The binding limit of one check: admitted or not, and what the headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset_ms: int
    retry_ms: int
    decided_ms: int  # Redis's clock when the limits were checked

    @classmethod
    def from_reply(cls, reply: Sequence[Any]) -> Outcome | None:
        """``rate_limit()``'s answer; None for ``{1}`` (no limit was checked)."""
        if len(reply) < 6:
            return None
        allowed, limit, remaining, reset_ms, retry_ms, now = (int(x) for x in reply[:6])
        return cls(allowed == 1, limit, max(0, remaining), reset_ms, retry_ms, now)

    @property
    def retry_after(self) -> int:
        """Whole seconds to wait (at least 1)."""
        return max(1, -(-self.retry_ms // 1000))

    def headers(self) -> list[tuple[str, str]]:
        out = [
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", str(self.remaining)),
            ("X-RateLimit-Reset", str(-(-self.reset_ms // 1000))),
        ]
        if not self.allowed:
            out.append(("Retry-After", str(self.retry_after)))
        return out

    def error_body(self) -> bytes:
        """The 429 body (app/errors.py's shape), for answers built without Flask."""
        error = {"code": "RATE_LIMITED", "message": errors.RateLimited.message}
        return json.dumps({"error": {**error, "details": {"retry_after": self.retry_after}}}).encode()


# A member suffix unique to each admitted request: a random part per import (hosts), the process
# id (gunicorn forks after import) and a counter.
_RANDOM = os.urandom(4).hex()
_COUNTER = itertools.count()


def nonce() -> str:
    return f"{_RANDOM}.{os.getpid()}.{next(_COUNTER)}"


@dataclass(frozen=True, slots=True)
class Bound:
    """Limits with their keys known: what a script needs to check them."""

    names: tuple[str, ...]
    windows: tuple[tuple[int, int], ...]  # (limit, window ms) per name

    def args(self) -> list[Any]:
        """``rate_limit()``'s ARGV from ``a0``: the member suffix, then the pairs."""
        out: list[Any] = [nonce()]
        for amount, window in self.windows:
            out += [amount, window]
        return out

    def tail(self) -> tuple[list[str], list[Any]]:
        """The KEYS and ARGV ``guard`` appends after the script's own."""
        return list(self.names), [*self.args(), len(self.names)]


def bind(rules: Sequence[Rule], ip: str, user_id: str | None, custom: Sequence[str | None] = ()) -> Bound:
    """The keys of ``rules`` for this client (``custom``: the keys of rules with a key function)."""
    names: list[str] = []
    for i, rule in enumerate(rules):
        who = custom[i] if i < len(custom) and custom[i] else None
        if who is None:
            who = f"user:{user_id}" if rule.key == "user" and user_id else f"ip:{ip}"
        names.append(keys.rate_limit(rule.scope, who))
    return Bound(tuple(names), tuple((r.limit.amount, r.limit.window_ms) for r in rules))


def check(client: redis.Redis, bound: Bound) -> Outcome | None:
    """Check and count ``bound`` in one call; None when Redis cannot be reached (let through)."""
    try:
        reply = run_script(redis_script(client, _CHECK_LUA), bound.names, bound.args())
    except redis.RedisError:
        unavailable()
        return None
    return Outcome.from_reply(reply)


def split(reply: Sequence[Any]) -> tuple[Outcome | None, Any]:
    """A guarded script's answer: the limits' outcome, and the script's (None when refused)."""
    outcome = Outcome.from_reply(reply[0])
    return outcome, (reply[1] if len(reply) > 1 else None)


def unavailable() -> None:
    log.warning("ratelimit.unavailable")


# ---- the request's limits ------------------------------------------------------------------------


@dataclass(slots=True)
class Pending:
    """The current request's limits before they are counted. ``user_rules``: whether a key
    depends on the user (identity then resolves the session, and may count them with it)."""

    rules: tuple[Rule, ...]
    ip: str
    custom: tuple[str | None, ...]
    outcome: Outcome | None = None
    counted: bool = False
    user_id: str | None = None

    @property
    def user_rules(self) -> bool:
        return any(rule.key == "user" for rule in self.rules)

    def templates(self) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV (the member suffix and pairs) for a script that knows the user id: user
        keys carry ``{user}``, which the script replaces."""
        bound = bind(self.rules, self.ip, "{user}", self.custom)
        return list(bound.names), bound.args()

    def settle(self, reply: Sequence[Any]) -> None:
        """A script counted the limits (``rate_limit()``'s answer)."""
        self.counted = True
        self.outcome = Outcome.from_reply(reply)

    def bound(self) -> Bound:
        return bind(self.rules, self.ip, self.user_id, self.custom)


def rides_along(func: Any) -> Any:
    """The view checks its limits in its own script (``take`` then ``settle_taken``)."""
    setattr(func, _RIDES_OPTION, True)
    return func


def take() -> Bound | None:
    """For a ``rides_along`` view, right before its script: the limits to send with it, once.
    None when there is nothing to count (limits off, or already counted)."""
    pending: Pending | None = g.pop("codex_ratelimit_pending", None)
    return pending.bound() if pending is not None else None


def settle_taken(outcome: Outcome | None) -> None:
    """After the script that carried ``take()``'s limits: the headers, or 429 when refused."""
    g.codex_ratelimit = outcome
    if outcome is not None and not outcome.allowed:
        raise _refusal(outcome)


def _refusal(outcome: Outcome) -> errors.RateLimited:
    return errors.RateLimited(details={"retry_after": outcome.retry_after}, headers=dict(outcome.headers()))


def _too_many(outcome: Outcome) -> Response:
    return errors.error_response(
        429,
        "RATE_LIMITED",
        errors.RateLimited.message,
        {"retry_after": outcome.retry_after},
        dict(outcome.headers()),
    )


def _client_ip() -> str:
    return request.remote_addr or "unknown"


def ip_key() -> str:
    """The client part of an IP-keyed limit (for a route's own key function)."""
    return f"ip:{_client_ip()}"


def _custom(rules: tuple[Rule, ...]) -> tuple[str | None, ...]:
    if all(isinstance(rule.key, str) for rule in rules):
        return ()
    return tuple(None if isinstance(rule.key, str) else _call(rule.key) for rule in rules)


def _call(key: Key) -> str | None:
    return key() if callable(key) else None


def _before_request() -> Response | None:
    if request.method == "OPTIONS":
        return None
    rules = rules_for_request()
    if not rules:
        return None
    counted: Outcome | None = request.environ.get(ENVIRON_KEY)
    if counted is not None:  # the fast path counted it and handed it over
        g.codex_ratelimit = counted
        return None if counted.allowed else _too_many(counted)
    pending = Pending(rules, _client_ip(), _custom(rules))
    if pending.user_rules:
        identify = current_app.extensions.get("rate_limit_identity")
        pending.user_id = identify(pending) if identify is not None else None
    if not pending.counted:
        if view_option(_RIDES_OPTION):
            g.codex_ratelimit_pending = pending
            return None
        pending.outcome = check(current_app.extensions["redis"], pending.bound())
    g.codex_ratelimit = pending.outcome
    return _too_many(pending.outcome) if pending.outcome is not None and not pending.outcome.allowed else None


def _after_request(response: Response) -> Response:
    pending: Pending | None = g.pop("codex_ratelimit_pending", None)
    if pending is not None:  # a rides_along view answered before its script: count the attempt now
        outcome = g.codex_ratelimit = check(current_app.extensions["redis"], pending.bound())
        if outcome is not None and not outcome.allowed:
            # (nothing ran that a 429 in before_request would have prevented: the script did not)
            return _too_many(outcome)
    outcome = g.get("codex_ratelimit")
    if outcome is not None and "X-RateLimit-Limit" not in response.headers:
        response.headers.extend(outcome.headers())
    return response


def init_app(app: Flask) -> None:
    """Register the check when ``RATELIMIT_ENABLED`` (off: nothing is on the request path). Call
    right after the request id and before the route pre-checks and body hooks."""
    if app.config["RATELIMIT_ENABLED"]:
        app.before_request(_before_request)


def init_headers(app: Flask) -> None:
    """Register the headers hook: after ``http.register_request_hooks``, so that it runs before
    ``app.http``'s finishing hook (after-request hooks run last-registered first), which then
    completes and records whatever answer this one leaves (a late 429 included)."""
    if app.config["RATELIMIT_ENABLED"]:
        app.after_request(_after_request)
