"""Which limits apply to a request (security.md §3): declared on views and blueprints, looked up once.

A route method declares its limits with ``route_limit``/``route_limits``; a blueprint shares one
limit between all its routes with ``blueprint_limit`` (``/storage``); every other ``/api/v1``
request falls under the shared budget (``API_LIMIT``, user when signed in, else IP). A request
with limits of its own does not also count against the shared budget: the spec's table gives
that budget to "every other ``/api/v1`` request". ``/health``, ``/metrics`` and the rest of the
paths outside those families have no limit, and OPTIONS preflights are never limited.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from flask import Blueprint, Flask, current_app, request
from flask.sansio.blueprints import BlueprintSetupState

from app.http import view_option

F = TypeVar("F", bound=Callable[..., Any])

# "ip": client IP; "user": the user when signed in, else the IP; or a function of its own that
# returns the client part of the key (e.g. the IP and a hashed email).
Key = Literal["ip", "user"] | Callable[[], str]

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_SPEC = re.compile(r"(\d+) per (?:(\d+) )?(second|minute|hour|day)s?")
_VIEW_OPTION = "_codex_rate_limits"
_BLUEPRINTS = "codex_ratelimit_blueprints"
_MEMO = "codex_ratelimit_rules"


@dataclass(frozen=True, slots=True)
class Limit:
    """``amount`` requests per ``window_ms``."""

    amount: int
    window_ms: int

    @classmethod
    def parse(cls, text: str) -> Limit:
        """``"5 per 15 minutes"``, ``"300 per minute"``, ``"3 per hour"``."""
        match = _SPEC.fullmatch(text.strip())
        if match is None or int(match.group(1)) < 1:
            raise ValueError(f"not a rate limit: {text!r}")
        count = int(match.group(2) or 1)
        return cls(int(match.group(1)), count * _UNITS[match.group(3)] * 1000)


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit on one family of requests: its budget is named by ``scope`` and kept per client."""

    limit: Limit
    scope: str
    key: Key


API_LIMIT = Rule(Limit.parse("300 per minute"), "api", "user")
"""Every other ``/api/v1`` request (security.md §3)."""


def route_limit(limit: str, *, key: Key) -> Callable[[F], F]:
    """Rate-limit this route method (security.md §3); ``key``: client IP, or user when signed in."""
    return route_limits((limit, key))


def route_limits(*limits: tuple[str, Key]) -> Callable[[F], F]:
    """Several limits on one route method, all of which apply (login: per IP and email, and per IP).

    They are checked together in one Redis call, before the body checks (413/415/INVALID_JSON);
    a request is admitted only when none is exceeded, and then counts against all of them."""

    def decorator(func: F) -> F:
        # The budget's name: the method's module and name (stable across restarts and processes),
        # shortened, with the limit's position.
        where = hashlib.sha256(f"{func.__module__}.{func.__qualname__}".encode()).hexdigest()[:8]
        name = func.__qualname__.replace(".", "-").lower()
        rules = [Rule(Limit.parse(text), f"{name}-{where}-{i}", key) for i, (text, key) in enumerate(limits)]
        setattr(func, _VIEW_OPTION, (*getattr(func, _VIEW_OPTION, ()), *rules))
        return func

    return decorator


def blueprint_limit(blueprint: Blueprint, limit: str, *, key: Key, scope: str) -> None:
    """One budget shared by every route of ``blueprint`` (``/storage``: 1200 per minute per IP)."""
    rule = Rule(Limit.parse(limit), scope, key)

    @blueprint.record_once
    def _register(state: BlueprintSetupState) -> None:
        state.app.extensions.setdefault(_BLUEPRINTS, {})[blueprint.name] = (rule,)


def rules_for_request() -> tuple[Rule, ...]:
    """The rules of the current request (memoised per app, endpoint and method). A request that
    matched no route (404/405, answered before any limit) has none."""
    endpoint = request.endpoint
    if endpoint is None:
        return ()
    app: Flask = current_app
    memo: dict[tuple[str, str], tuple[Rule, ...]] = app.extensions.setdefault(_MEMO, {})
    key = (endpoint, request.method)
    rules = memo.get(key)
    if rules is None:
        rules = memo[key] = _lookup(app)
    return rules


def _lookup(app: Flask) -> tuple[Rule, ...]:
    own: tuple[Rule, ...] = view_option(_VIEW_OPTION) or ()
    if own:
        return own
    blueprint = request.blueprint
    shared: tuple[Rule, ...] = app.extensions.get(_BLUEPRINTS, {}).get(blueprint, ()) if blueprint else ()
    if shared:
        return shared
    # (the rule's path: every route under /api/v1 has the prefix; the HLS proxy has its own limit)
    if request.path.startswith("/api/v1/"):
        return (API_LIMIT,)
    return ()


def rules_of(app: Flask, method: str, rule: str) -> tuple[Rule, ...]:
    """The rules of the route method ``method`` of the URL rule ``rule`` (e.g.
    ``/api/v1/content/<content_id>/progress``), for app/access/fast_path.py, which answers some
    of its requests without a request context: the route's own limits, else the shared budget."""
    for url_rule in app.url_map.iter_rules():
        if url_rule.rule != rule or method not in (url_rule.methods or ()):
            continue
        view = app.view_functions[url_rule.endpoint]
        view_class = getattr(view, "view_class", None)
        handler = getattr(view_class, method.lower(), None) if view_class is not None else None
        own = getattr(handler, _VIEW_OPTION, None) or getattr(view, _VIEW_OPTION, ())
        if own:
            return tuple(own)
        break
    return (API_LIMIT,) if rule.startswith("/api/v1/") else ()
