"""The project's rate limiter (security.md §3): the table's limits, checked in one Redis call.

``rules`` says which limits apply to a request (declared with ``route_limit``/``route_limits`` on
route methods and ``blueprint_limit`` on blueprints; every other ``/api/v1`` request shares
``API_LIMIT``); ``limiter`` counts them with one Lua script (``lua/ratelimit.lua``: an exact log of
admissions per key, so no window of a limit's length ever admits more than the limit) and holds
the Flask hooks, the headers and the 429 answer. Scripts that do other work in the same round
trip include the fragment (``guard``, ``FRAGMENT``). Bottom layer: imports no domain; identity
hands it the user behind a request at start-up (``app.extensions["rate_limit_identity"]``).
"""

from app.ratelimit.limiter import (
    ENVIRON_KEY,
    FRAGMENT,
    Bound,
    Outcome,
    Pending,
    bind,
    check,
    guard,
    init_app,
    init_headers,
    ip_key,
    rides_along,
    settle_taken,
    split,
    take,
    unavailable,
)
from app.ratelimit.rules import API_LIMIT, Key, Limit, Rule, blueprint_limit, route_limit, route_limits, rules_of

__all__ = [
    "API_LIMIT",
    "ENVIRON_KEY",
    "FRAGMENT",
    "Bound",
    "Key",
    "Limit",
    "Outcome",
    "Pending",
    "Rule",
    "bind",
    "blueprint_limit",
    "check",
    "guard",
    "init_app",
    "init_headers",
    "ip_key",
    "rides_along",
    "route_limit",
    "route_limits",
    "rules_of",
    "settle_taken",
    "split",
    "take",
    "unavailable",
]
