"""Stream-URL issuance (``GET /content/{id}/stream``, access cache warm) next to ``GET /health``.

Setup: the shared bench database ``codex_bench`` (created and migrated with Alembic, as in
bench_auth) gets an organization ``bench-playback`` with a ready video media item, one paid
content item, a buyer with a purchase grant, and (for bench_progress) 100 viewers x 100 free
content items. Only that org's rows and keys are touched (Redis DB 13, keys ``access:*``,
``pb:*`` and the bench sessions), so other benchmarks sharing the database keep their data.
The app runs under gunicorn with the Procfile's settings (2 workers x 4 threads), local storage
(the thumbnail URL is HMAC-signed), in the production configuration (``bench.common.PRODUCTION``)
with BENCH_USERS (3000) signed-in users on a free item; the former bench configuration (limits
off, ``LOG_LEVEL=WARNING``, the one buyer on the paid item) is measured alongside as context.

Measured in the same run, interleaved: the trivial Flask ``GET /health`` (bench_http's baseline),
Codex ``GET /health``, the stream endpoint with the buyer's Bearer token, and the proxy's
``master.m3u8`` as context, in turn, for BENCH_ROUNDS rounds (see ``interleaved``): on a machine
shared with other work, a burst of outside load then hits every target alike. The first round's
warm-up fills the session cache, the access cache (``access:{user}:{content}``) and each worker's
near cache (app/speed/nearcache.py), so a measured request is: the session entry, the access entry and
the content's snapshot token (``content:gen:{id}``) from the worker's near cache (no Redis call;
Redis reports any change to them), the content + media facts from the worker's snapshot, an HMAC
stream token and a signed thumbnail URL. Goal (issue 7): stream issuance >= 0.6 x the trivial endpoint's
requests/s. The "per round" column is that ratio in each round (min-max), a measure of the noise. In
the same rounds, on the same users: the least possible stream URL (bench/hot_floor_app.py), whose
ratio bounds what any implementation reaches here.

    python -m bench.bench_stream          # or: python bench/run.py stream

Knobs: BENCH_DURATION (s per target, default 10), BENCH_ROUNDS (5), BENCH_WARMUP (s, 2),
BENCH_CONCURRENCY (16).
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, delete, insert, select
from sqlalchemy.orm import Session

from bench.bench_auth import bench_env, migrate, print_table
from bench.common import LoadResult, Target, bearer_users, client_ips, interleaved, percentile, record_goal
from bench.users import sessions, user_count

ORG_SLUG = "bench-playback"
EMAIL = "bench-playback-{}@example.com"
VIEWERS = 100
FREE_ITEMS = 100
GOAL_RATIO = 0.6
STREAM_LIMIT = 60  # per user per minute (security.md §3; the shared 300/min is larger)
HLS_LIMIT = 600  # per IP per minute, the HLS proxy


@dataclass
class Playback:
    org_id: uuid.UUID
    content_id: uuid.UUID
    buyer_id: uuid.UUID
    token: str  # the buyer's session token
    viewer_ids: list[uuid.UUID]
    free_ids: list[uuid.UUID]


def _user(session: Session, tag: str) -> Any:
    from app.identity.models import User

    email = EMAIL.format(tag)
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, name=f"Bench {tag}", email_verified_at=datetime.now(UTC))
        session.add(user)
        session.flush()
    return user


def prepare(env: dict[str, str]) -> Playback:
    """Migrate; create the playback org and its rows unless they exist; a fresh buyer session."""
    import redis

    from app.access.models import ContentAccess
    from app.commerce.models import CheckoutSession, Purchase
    from app.content.models import Content
    from app.identity.models import AuthSession
    from app.identity.sessions import new_token
    from app.media.models import MediaItem
    from app.orgs.models import Membership, Organization, OrgSettings
    from app.storage import keys

    migrate(env["DATABASE_URL"])
    engine = create_engine(env["DATABASE_URL"])
    now = datetime.now(UTC)
    try:
        with Session(engine) as session, session.begin():
            owner = _user(session, "owner")
            buyer = _user(session, "buyer")
            org = session.scalar(select(Organization).where(Organization.slug == ORG_SLUG))
            if org is None:
                org = Organization(name="Bench Playback", slug=ORG_SLUG, created_by=owner.id)
                session.add(org)
                session.flush()
                session.add(OrgSettings(organization_id=org.id, platform_name=org.name, support_email=owner.email))
                session.add(Membership(organization_id=org.id, user_id=owner.id, role="owner"))
                media_id = uuid.uuid4()
                session.execute(
                    insert(MediaItem).values(
                        id=media_id, organization_id=org.id, created_by=owner.id, title="Bench clip",
                        media_type="video", mime_type="video/mp4", file_size_bytes=1_000_000, status="ready",
                        attempts=1, original_key=keys.original_key(org.id, media_id, "video/mp4"),
                        hls_master_key=keys.hls_master_key(org.id, media_id, 1),
                        hls_preview_key=keys.hls_preview_playlist_key(org.id, media_id, 1),
                        thumbnail_key=keys.thumbnail_key(org.id, media_id, 1), renditions=["720p", "360p"],
                        duration_seconds=1800, width=1280, height=720, ready_at=now,
                    )
                )  # fmt: skip
                paid = Content(
                    organization_id=org.id, created_by=owner.id, media_id=media_id, title="Bench paid",
                    slug="bench-paid", content_type="video", visibility="purchased_only", price_cents=1999,
                    currency="usd", status="published", published_at=now,
                )  # fmt: skip
                session.add(paid)
                session.flush()
                checkout = CheckoutSession(
                    id=f"cs_bench_{uuid.uuid4().hex}", provider="local", customer_id=buyer.id, content_id=paid.id,
                    organization_id=org.id, amount_cents=1999, currency="usd", url="http://localhost/x",
                    success_url="http://localhost/s", cancel_url="http://localhost/c", status="complete",
                    payment_status="paid", expires_at=now + timedelta(minutes=30),
                )  # fmt: skip
                session.add(checkout)
                session.flush()
                purchase = Purchase(
                    customer_id=buyer.id, content_id=paid.id, organization_id=org.id, provider="local",
                    checkout_session_id=checkout.id, payment_intent_id=f"pi_bench_{uuid.uuid4().hex}",
                    amount_cents=1999, currency="usd", status="completed", purchased_at=now,
                )  # fmt: skip
                session.add(purchase)
                session.flush()
                session.add(
                    ContentAccess(
                        user_id=buyer.id, content_id=paid.id, organization_id=org.id, source="purchase",
                        purchase_id=purchase.id, granted_at=now,
                    )
                )  # fmt: skip
                session.execute(
                    insert(Content),
                    [
                        dict(
                            organization_id=org.id, created_by=owner.id, media_id=media_id, title=f"Free {i}",
                            slug=f"bench-free-{i}", content_type="video", visibility="public", price_cents=None,
                            currency="usd", status="published", published_at=now,
                        )
                        for i in range(FREE_ITEMS)
                    ],
                )  # fmt: skip
            paid_id = session.scalar(
                select(Content.id).where(Content.organization_id == org.id, Content.price_cents > 0)
            )
            free_ids = list(
                session.scalars(
                    select(Content.id).where(Content.organization_id == org.id, Content.price_cents.is_(None))
                )
            )
            viewer_ids = [_user(session, f"viewer-{i}").id for i in range(VIEWERS)]
            session.execute(delete(AuthSession).where(AuthSession.user_id == buyer.id))
            token, token_hash = new_token()
            # last_seen_at = now: no sliding-expiry write during a run shorter than 5 minutes.
            session.add(
                AuthSession(
                    user_id=buyer.id, token_hash=token_hash, expires_at=now + timedelta(hours=24),
                    last_seen_at=now, created_at=now,
                )
            )  # fmt: skip
            buyer_id, org_id = buyer.id, org.id
    finally:
        engine.dispose()
    assert paid_id is not None
    client = redis.Redis.from_url(env["REDIS_URL"])
    try:
        forget_keys(client, ["access:*", "pb:*"])
    finally:
        client.close()
    return Playback(org_id, paid_id, buyer_id, token, viewer_ids, free_ids)


def forget_keys(client: Any, patterns: list[str]) -> None:
    """Delete this benchmark's keys only (other benchmarks share the Redis DB)."""
    for pattern in patterns:
        batch = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(batch), 1000):
            client.delete(*batch[start : start + 1000])


def row(
    name: str,
    measured: tuple[LoadResult, list[float]],
    trivial_measured: tuple[LoadResult, list[float]],
    health: LoadResult,
    goal: str,
) -> dict[str, Any]:
    (result, per_round), (trivial, trivial_rounds) = measured, trivial_measured
    p99, trivial_p99 = percentile(result.latencies, 99) * 1000, percentile(trivial.latencies, 99) * 1000
    ratios = [a / b for a, b in zip(per_round, trivial_rounds, strict=True) if b]
    return {
        "name": name,
        "req/s": round(result.rps, 1),
        "p50 ms": round(percentile(result.latencies, 50) * 1000, 2),
        "p99 ms": round(p99, 2),
        "vs trivial /health": round(result.rps / trivial.rps, 2) if trivial.rps else 0.0,
        "per round": f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-",
        "vs Codex /health": round(result.rps / health.rps, 2) if health.rps else 0.0,
        "p99 vs trivial": round(p99 / trivial_p99, 2) if trivial_p99 else 0.0,
        "requests (errors)": f"{result.requests} ({result.errors})",
        "goal": goal,
    }


def goal_text(result: LoadResult, trivial: LoadResult, ratio: float) -> str:
    met = trivial.rps and result.rps / trivial.rps >= ratio
    return f">= {ratio} x trivial ({'met' if met else 'NOT met'})"


def main() -> list[dict[str, Any]]:
    env = bench_env()
    playback = prepare(env)
    auth = {"Authorization": f"Bearer {playback.token}"}
    write_master_playlist(env, playback)
    # Production: thousands of signed-in users on a free item (every user may play it; the
    # buyer's paid item needs a grant per user), each under its 60/min.
    users = bearer_users(sessions(env["DATABASE_URL"], user_count()), STREAM_LIMIT)
    ips = client_ips(10_000, HLS_LIMIT)
    free_path = f"/api/v1/content/{playback.free_ids[0]}/stream?expires_in=3600"
    stream_path = f"/api/v1/content/{playback.content_id}/stream?expires_in=3600"
    results = interleaved(
        env,
        [
            Target("trivial", "trivial", "/health"),
            Target("health", "codex", "/health", {"header_factory": ips}),
            Target("stream", "codex", free_path, {"header_factory": users}),
            Target("floor", "hot_floor", free_path, {"header_factory": users}),
            Target("stream_bench", "codex_bench", stream_path, {"headers": auth}),
            Target("master", "codex", lambda url: master_path(url, playback, auth), {"header_factory": ips}),
        ],
    )
    streams = results["stream"][0]
    if streams.statuses.get(200, 0) + streams.statuses.get(429, 0) != streams.requests:
        raise RuntimeError(f"unexpected statuses for /stream: {dict(streams.statuses)}")
    trivial, health = results["trivial"], results["health"][0]
    floor = results["floor"][0]
    if floor.statuses.get(200, 0) != floor.requests:
        raise RuntimeError(f"unexpected statuses from the floor app: {dict(floor.statuses)}")
    record_goal(
        "GET /content/{id}/stream", results["stream"], trivial, GOAL_RATIO,
        bench_config=results["stream_bench"], floor=results["floor"], callers=[users],
    )  # fmt: skip
    rows = [
        row("trivial Flask GET /health", trivial, trivial, health, "baseline"),
        row("Codex GET /health", results["health"], trivial, health, "-"),
        row("GET /content/{id}/stream (access cache warm)", results["stream"], trivial, health,
            goal_text(streams, trivial[0], GOAL_RATIO)),
        row("  same, former bench configuration (one buyer, limits off)", results["stream_bench"], trivial, health,
            "context"),
        row("  least possible stream URL (bench/hot_floor_app.py)", results["floor"], trivial, health,
            "bounds the goal"),
        row("GET /stream/{token}/master.m3u8 (context)", results["master"], trivial, health, "-"),
    ]  # fmt: skip
    rows.append({**{k: "" for k in rows[0]}, "name": "callers", "req/s": users.summary(),
                 "goal": f"429s: {streams.statuses.get(429, 0)} stream, {results['master'][0].statuses.get(429, 0)} "
                         f"master (must be 0); HLS: {ips.summary()}"})  # fmt: skip
    print_table(rows)
    return rows


def write_master_playlist(env: dict[str, str], playback: Playback) -> None:
    """The media row exists without files: write a master playlist into the app's local storage."""
    from pathlib import Path

    from app.config import Config
    from app.media import ladder
    from app.media.models import MediaItem
    from app.storage import keys
    from app.storage.local import LocalStorage

    engine = create_engine(env["DATABASE_URL"])
    try:
        with Session(engine) as session:
            media = session.scalar(select(MediaItem).where(MediaItem.organization_id == playback.org_id))
            assert media is not None and media.hls_master_key
            master_key = media.hls_master_key
    finally:
        engine.dispose()
    storage = LocalStorage(Path(Config.from_env({**os.environ, **env}).STORAGE_LOCAL_ROOT), "", "")
    variants = [ladder.Variant(n, 1_000_000, 800_000, "avc1.64001f,mp4a.40.2", (1280, 720)) for n in ("720p", "360p")]
    storage.put_bytes(master_key, ladder.master_playlist(variants).encode(), keys.CONTENT_TYPES["m3u8"])


def master_path(base_url: str, playback: Playback, auth: dict[str, str]) -> str:
    """The proxy's master playlist path, from a stream URL issued by the running server."""
    import http.client
    import json
    from urllib.parse import urlsplit

    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(base_url).port, timeout=10)
    conn.request("GET", f"/api/v1/content/{playback.content_id}/stream", headers=auth)
    manifest = json.loads(conn.getresponse().read())["manifest_url"]
    conn.close()
    return "/api/v1/stream/" + manifest.split("/api/v1/stream/", 1)[1]


if __name__ == "__main__":
    main()
