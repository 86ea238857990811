"""Schemathesis against the app's own OpenAPI document (issue 9, part 4).

Every operation of ``/api/v1/openapi.json`` is fuzzed through the WSGI app three times: as an
anonymous caller, as a signed-in caller (a fresh session cookie per case + an allowed ``Origin``,
so CSRF passes) who owns an organization (a platform owner for the ``/admin`` operations), and as
a signed-in customer with no purchases. Path parameters
and ``content_id``/``email``/login body fields are replaced, for some of the generated cases, by
values of real rows (the org, a member, a customer, media, published free and paid content, a
purchase, a checkout session, a Stripe event), so the handlers get past their 404s; each operation
runs in a savepoint rolled back afterwards, so every operation sees the same rows. Checks: no 5xx,
every status code documented, every response body matching its documented schema.
Failures in ``KNOWN_FAILURES`` (domains still being written elsewhere) make the test xfail;
anything else fails it.

The run in ``make test`` is small and deterministic (a few examples per operation, same data
every run, no shrinking). ``FUZZ_EXAMPLES=200 .venv/bin/pytest -p no:xdist tests/fuzz`` runs a
bigger one; ``FUZZ_SEED`` picks another deterministic sequence.
"""

from __future__ import annotations

import os
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from sqlalchemy.orm import Session

from app.identity.models import User
from app.orgs.models import Organization
from tests import factories
from tests.identity.conftest import fast_passwords  # noqa: F401 - autouse: cheap argon2
from tests.identity.helpers import ORIGIN, TEST_PASSWORD, add_member, make_org, make_user, signed_in

# Per operation and caller: valid-looking cases, then invalid ones (generating those costs more).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
NEGATIVE_EXAMPLES = EXAMPLES if "FUZZ_EXAMPLES" in os.environ else 2
SEED = int(os.environ.get("FUZZ_SEED", "20251201"))
BIG_RUN = "FUZZ_EXAMPLES" in os.environ
# Failures in domains whose authors were still at work when this was written: reported to them, and
# tolerated here (the test is marked xfail, listing them) until fixed. Anything else fails the test.
KNOWN_FAILURES: dict[str, str] = {}  # none left: each one found was fixed (see the test for them below)
DEFAULT_RUN_HITS: set[str] = set()  # known failures the default run reaches

Caller = Callable[[str], tuple[dict[str, str], dict[str, str]]]  # path -> (headers, cookies) of one case
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@dataclass
class World:
    owner: User
    org: Organization
    creator: User
    customer: User
    platform_owner: User  # the caller of the /admin operations
    buyer: User  # a verified customer with no purchases yet
    ids: dict[str, str]
    session: Session  # the test's transaction, for a savepoint around each operation

    def path_ids(self, path: str) -> dict[str, str]:
        """Real values for the path parameters of ``path``."""
        ids = dict(self.ids)
        ids["user_id"] = ids["customer_id"] if "/customers/" in path else ids["creator_id"]
        if path.startswith("/api/v1/checkout/"):
            ids["session_id"] = ids["checkout_session_id"]
        else:  # /auth/sessions/{session_id}: the caller's own session is not known here
            ids.pop("session_id", None)
        return ids


@pytest.fixture()
def world(db_session: Session, sent_tasks: list[Any]) -> World:
    now = datetime.now(UTC)
    owner = make_user(email_verified_at=now)
    org = make_org(owner)
    creator = add_member(org, make_user(email_verified_at=now), "creator")
    customer = make_user(email_verified_at=now)
    media = factories.MediaItemFactory(organization_id=org.id, created_by=creator.id)
    paid = factories.PaidContentFactory(organization_id=org.id, created_by=creator.id, media_id=media.id)
    free = factories.PaidContentFactory(
        organization_id=org.id, created_by=creator.id, media_id=media.id, price_cents=None
    )
    purchase = factories.PurchaseFactory(customer_id=customer.id, content=paid)
    event = factories.StripeEventFactory()
    ids = {
        "org_id": str(org.id),
        "org_slug": org.slug,
        "creator_id": str(creator.id),
        "customer_id": str(customer.id),
        "media_id": str(media.id),
        "content_id": str(paid.id),
        "free_content_id": str(free.id),
        "purchase_id": str(purchase.id),
        "checkout_session_id": purchase.checkout_session_id,
        "event_id": event.id,
    }
    platform_owner = make_user(email_verified_at=now, role="platform_owner")
    buyer = make_user(email_verified_at=now)
    return World(owner, org, creator, customer, platform_owner, buyer, ids, db_session)


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict({"seed": SEED, "generation": {"deterministic": True, "database": "none"}})


def load_schema(app: Flask, world: World) -> Any:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=_config())

    @schema.hook
    def flatmap_path_parameters(context: schemathesis.HookContext, path_parameters: dict[str, Any]) -> Any:
        assert context.operation is not None
        real = world.path_ids(context.operation.path)
        substituted = {name: real.get(name, value) for name, value in (path_parameters or {}).items()}
        choices = [substituted, path_parameters]  # Hypothesis tries the first one first
        if "content_id" in substituted:
            choices.insert(1, {**substituted, "content_id": world.ids["free_content_id"]})
        return st.sampled_from(choices)

    @schema.hook
    def flatmap_body(context: schemathesis.HookContext, body: Any) -> Any:
        if not isinstance(body, dict):
            return st.just(body)
        path = context.operation.path if context.operation is not None else ""
        real = dict(body)
        if "content_id" in real:
            real["content_id"] = world.ids["content_id"]
        if "email" in real:  # an address to invite (a customer's), or an account that exists
            real["email"] = world.customer.email if "/invitations" in path else world.owner.email
        if path == "/api/v1/auth/login" and "password" in real:
            real["password"] = TEST_PASSWORD
        if path == "/api/v1/auth/register":  # a new account (201), then the same one again (409)
            real.update(email="fuzz-new@example.com", password="Fuzz-Passw0rd", name="Fuzz User", org_slug=None)
        return st.sampled_from([real, body])

    return schema


def fuzz_operation(operation: Any, mode: GenerationMode, caller: Caller, statuses: Counter[int]) -> str | None:
    """Run one operation's cases, counting the status codes; the report of the first failure, or None."""

    @settings(
        max_examples=EXAMPLES if mode is GenerationMode.POSITIVE else NEGATIVE_EXAMPLES,
        deadline=None,
        derandomize=False,  # reproducible through @seed instead, so FUZZ_SEED can pick another sequence
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate] + ([Phase.shrink] if BIG_RUN else []),
        verbosity=Verbosity.quiet,
    )
    @seed(SEED)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        headers, cookies = caller(case.path)
        response = case.call(headers=headers, cookies=cookies)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers, transport_kwargs={"cookies": cookies})

    try:
        run()
    except Unsatisfiable:  # nothing to generate in this mode (e.g. no parameters to break)
        return None
    except FailureGroup as exc:
        return str(exc)
    except Exception as exc:  # an error escaping the app, or several distinct failures
        return "".join(traceback.format_exception(exc, limit=-3))[-6000:]
    return None


def modes(operation: Any) -> list[GenerationMode]:
    """Valid cases always; invalid ones where a query or body can be broken (all operations in a big run).

    Breaking a path parameter only gives 400/404 and is slow to generate (string parameters).
    """
    if BIG_RUN or len(operation.query) or len(operation.body):
        return [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    return [GenerationMode.POSITIVE]


def fuzz(app: Flask, world: World, caller: Caller) -> tuple[dict[str, Counter[int]], list[str]]:
    """Fuzz every operation; fails with the report of each failing operation not in ``KNOWN_FAILURES``.

    Returns the status codes seen per operation and the known failures that occurred.
    """
    schema = load_schema(app, world)
    failures: list[str] = []
    known: list[str] = []
    seen: dict[str, Counter[int]] = {}
    timings: dict[str, float] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        statuses = seen.setdefault(operation.label, Counter())
        for mode in modes(operation):
            # Every operation starts from the same rows: what a DELETE did is undone before the next one.
            savepoint = world.session.begin_nested()
            started = time.monotonic()
            try:
                report = fuzz_operation(operation, mode, caller, statuses)
            finally:
                savepoint.rollback()
            timings[f"{operation.label} {mode.value}"] = time.monotonic() - started
            if report is not None:
                (known if operation.label in KNOWN_FAILURES else failures).append(
                    f"== {operation.label} ({mode.value})\n{report}"
                )
    if os.environ.get("FUZZ_REPORT"):
        for label, statuses in seen.items():
            print(f"{label}: {dict(sorted(statuses.items()))}")
        print(f"total {sum(timings.values()):.2f} s")
        for label, seconds in sorted(timings.items(), key=lambda item: -item[1])[:15]:
            print(f"{seconds:6.2f} s  {label}")
    assert not failures, f"{len(failures)} failing operation(s):\n\n" + "\n\n".join(failures)
    return seen, known


def expect_known(known: list[str]) -> None:
    """xfail with the known failures that occurred, naming each one's fix."""
    if known:
        labels = sorted({entry.split(" (", 1)[0].removeprefix("== ") for entry in known})
        pytest.xfail("; ".join(f"{label}: {KNOWN_FAILURES[label]}" for label in labels))


def succeeded(seen: dict[str, Counter[int]]) -> set[str]:
    return {label for label, statuses in seen.items() if any(200 <= code < 300 for code in statuses)}


def test_anonymous(app: Flask, world: World) -> None:
    seen, known = fuzz(app, world, lambda _path: ({}, {}))
    assert len(seen) >= 40  # every operation of the document was exercised
    # Anonymous callers get through only where no session is needed.
    assert {"POST /api/v1/auth/login", "GET /api/v1/auth/me"} & set(seen) == {
        "POST /api/v1/auth/login",
        "GET /api/v1/auth/me",
    }
    assert not {label for label in succeeded(seen) if "/dashboard/" in label or label.startswith("GET /api/v1/me/")}
    assert all(401 in seen[label] for label in ("GET /api/v1/auth/me", "GET /api/v1/orgs"))
    expect_known(known)


def test_signed_in_org_owner(app: Flask, world: World) -> None:
    # A fresh session per case: logout, password changes and session deletes end the previous one.
    def caller(path: str) -> tuple[dict[str, str], dict[str, str]]:
        user = world.platform_owner if path.startswith("/api/v1/admin/") else world.owner
        return {"Origin": ORIGIN}, {"codex_session": signed_in(user)}

    seen, known = fuzz(app, world, caller)
    # The real ids got the cases past the lookups: the org's own pages answered 2xx.
    assert {
        "GET /api/v1/auth/me",
        "GET /api/v1/orgs/{org_id}",
        "GET /api/v1/orgs/{org_id}/members",
        "GET /api/v1/orgs/{org_id}/dashboard/summary",
        "GET /api/v1/admin/stripe-events",
    } <= succeeded(seen)
    if not BIG_RUN:  # the default run is deterministic: a known failure that no longer occurs was fixed
        fixed = DEFAULT_RUN_HITS - {entry.split(" (", 1)[0].removeprefix("== ") for entry in known}
        assert not fixed, f"fixed, remove from KNOWN_FAILURES: {sorted(fixed)}"
    expect_known(known)


def test_signed_in_customer(app: Flask, world: World) -> None:
    # Outside the org: its management operations answer 404, the catalogue and checkout work.
    seen, known = fuzz(app, world, lambda _path: ({"Origin": ORIGIN}, {"codex_session": signed_in(world.buyer)}))
    assert {"POST /api/v1/checkout", "GET /api/v1/me/library", "GET /api/v1/content/{content_id}/access"} <= succeeded(
        seen
    )
    assert not {label for label in succeeded(seen) if "/dashboard/" in label or label.startswith("GET /api/v1/admin")}
    expect_known(known)


# ---- what fuzzing found, pinned ---------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/auth/sessions", "/api/v1/me/purchases", "/api/v1/me/library"])
def test_a_page_far_past_the_end_is_empty_not_a_500(app: Flask, world: World, path: str) -> None:
    # Found by schemathesis: page=999999999999999999 made OFFSET overflow bigint (500 INTERNAL_ERROR).
    client = app.test_client()
    client.set_cookie("codex_session", signed_in(world.owner), domain="localhost")
    response = client.get(f"{path}?page=999999999999999999&per_page=100")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["items"] == [] and body["page"] == 999999999999999999 and body["total"] >= 0


@pytest.mark.parametrize(
    "query",
    [
        "revenue?end=0001-01-01",  # end - 29 days underflowed date.min (OverflowError -> 500)
        "revenue.svg?end=0001-01-01",
        "top-content?end=0001-01-10",
        "revenue?start=9999-12-30&end=9999-12-31",  # the day after end overflowed date.max
        "customers?page=999999999999999999&per_page=100",  # OFFSET overflowed bigint
    ],
)
def test_dashboard_edge_queries_are_answered_not_a_500(app: Flask, world: World, query: str) -> None:
    # Found by schemathesis, fixed in app/dashboard.
    client = app.test_client()
    client.set_cookie("codex_session", signed_in(world.owner), domain="localhost")
    response = client.get(f"/api/v1/orgs/{world.org.id}/dashboard/{query}")
    assert response.status_code in (200, 400), response.get_data(as_text=True)[:300]
