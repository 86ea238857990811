"""Public catalogue list with 10 000 content rows, next to ``GET /health`` in the same run.

Setup: the shared bench database ``codex_bench`` (created and migrated with Alembic, as in
bench_auth) gets one organization ``bench-catalog`` with one ready video media item and 10 000
content rows (9 000 published, 500 draft, 500 archived; titles/descriptions/tags/prices vary),
inserted once with Core bulk inserts and reused by later runs. Only rows of that org are touched.
The app runs under gunicorn with the Procfile's settings (2 workers x 4 threads), local storage
(thumbnail URLs are HMAC-signed per item), in the production configuration (``bench.common.PRODUCTION``),
anonymous requests spread over 10 000 client IPs (``X-Forwarded-For``) so that no IP passes its
300/min; the default list is measured on the former bench configuration too, as context.

Measured interleaved with the trivial Flask ``GET /health`` (``bench.common.interleaved``):
``GET /health`` (the app's floor), the default
catalogue page (``published_at`` desc, 20 items, with the total count), a page sorted by price
(``ix_content_catalog_price``), two searches (``q=``, ILIKE over title/description: one a fifth of
the rows match, where Postgres scans; one selective, served by the trigram indexes), a tag filter
(GIN), and one catalogue item.
The plan of the default list query is checked with EXPLAIN (it must use ``ix_content_catalog``).

    python -m bench.bench_catalog          # or: python bench/run.py catalog

Knobs: BENCH_DURATION (s per target, default 10), BENCH_ROUNDS (5), BENCH_WARMUP (s, 2), BENCH_CONCURRENCY (16).
Goals (issue 19): default list >= 0.5 x trivial, searches >= 0.25 x trivial.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.orm import Session

from bench.bench_auth import bench_env, migrate, print_table
from bench.common import Target, client_ips, interleaved, percentile, ratio_text, record_goal

ORG_SLUG = "bench-catalog"
OWNER_EMAIL = "bench-catalog@example.com"
ROWS = 10_000
CATALOG_LIMIT = 300  # per IP per minute for anonymous callers ("every other /api/v1 request")
LIST_GOAL = 0.5  # issue 19, x trivial
SEARCH_GOAL = 0.25
WORDS = ("bread", "cake", "knife", "sauce", "pasta", "grill", "soup", "salad", "pastry", "coffee")


def prepare(env: dict[str, str]) -> tuple[uuid.UUID, uuid.UUID]:
    """Migrate; create the org and its 10 000 rows unless they exist. Returns (org id, one published id)."""
    from app.content.models import Content
    from app.identity.models import User
    from app.media.models import MediaItem
    from app.orgs.models import Membership, Organization, OrgSettings
    from app.storage import keys

    migrate(env["DATABASE_URL"])
    engine = create_engine(env["DATABASE_URL"])
    try:
        with Session(engine) as session, session.begin():
            org = session.scalar(select(Organization).where(Organization.slug == ORG_SLUG))
            if org is None:
                user = session.scalar(select(User).where(User.email == OWNER_EMAIL))
                if user is None:
                    user = User(email=OWNER_EMAIL, name="Bench Catalog")
                    session.add(user)
                    session.flush()
                org = Organization(name="Bench Catalog", slug=ORG_SLUG, created_by=user.id)
                session.add(org)
                session.flush()
                session.add(OrgSettings(organization_id=org.id, platform_name=org.name, support_email=OWNER_EMAIL))
                session.add(Membership(organization_id=org.id, user_id=user.id, role="owner"))
            count = session.scalar(select(func.count()).select_from(Content).where(Content.organization_id == org.id))
            if count != ROWS:
                session.execute(text("DELETE FROM content WHERE organization_id = :o"), {"o": org.id})
                session.execute(text("DELETE FROM media_items WHERE organization_id = :o"), {"o": org.id})
                media_id = uuid.uuid4()
                now = datetime.now(UTC)
                session.execute(
                    insert(MediaItem).values(
                        id=media_id,
                        organization_id=org.id,
                        created_by=org.created_by,
                        title="Bench clip",
                        media_type="video",
                        mime_type="video/mp4",
                        file_size_bytes=1_000_000,
                        status="ready",
                        attempts=1,
                        original_key=keys.original_key(org.id, media_id, "video/mp4"),
                        hls_master_key=keys.hls_master_key(org.id, media_id, 1),
                        hls_preview_key=keys.hls_preview_playlist_key(org.id, media_id, 1),
                        thumbnail_key=keys.thumbnail_key(org.id, media_id, 1),
                        renditions=["720p", "480p", "360p"],
                        duration_seconds=600,
                        width=1280,
                        height=720,
                        ready_at=now,
                    )
                )
                rows = [{**_row(i, org.id, media_id, now), "created_by": org.created_by} for i in range(ROWS)]
                session.execute(insert(Content), rows)
            sample = session.scalar(
                select(Content.id).where(Content.organization_id == org.id, Content.status == "published").limit(1)
            )
            assert sample is not None
            org_id = org.id
        # As autovacuum would have by now: statistics, and a visibility map for index-only counts.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE content"))
    finally:
        engine.dispose()
    return org_id, sample


def _row(i: int, org_id: uuid.UUID, media_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    status = "draft" if i % 20 == 0 else "archived" if i % 20 == 1 else "published"
    word = WORDS[i % len(WORDS)]
    price = (None, 0, 999, 1999, 4999)[i % 5]
    return {
        "id": uuid.uuid4(),
        "organization_id": org_id,
        "media_id": media_id,
        "title": f"{word.title()} lesson {i}",
        "slug": f"{word}-lesson-{i}",
        "description": f"Lesson {i} about {word} and {WORDS[(i * 7) % len(WORDS)]}.",
        "content_type": "video",
        "visibility": "purchased_only" if price else "public",
        "price_cents": price,
        "currency": "usd",
        "category": WORDS[(i * 3) % len(WORDS)],
        "tags": [word, f"level-{i % 3}"],
        "status": status,
        "published_at": None if status == "draft" else now - timedelta(minutes=i),
        "archived_at": now if status == "archived" else None,
    }


def check_plan(env: dict[str, str], org_id: uuid.UUID) -> str:
    """EXPLAIN of the default list query: the catalogue index must drive it."""
    engine = create_engine(env["DATABASE_URL"])
    try:
        with engine.connect() as conn:
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    text(
                        "EXPLAIN SELECT c.id FROM content c JOIN media_items m ON m.id = c.media_id"
                        " WHERE c.organization_id = :o AND c.status = 'published' AND c.deleted_at IS NULL"
                        " ORDER BY c.published_at DESC, c.id DESC LIMIT 20"
                    ),
                    {"o": org_id},
                )
            )
    finally:
        engine.dispose()
    return "ix_content_catalog" if "ix_content_catalog" in plan else "NOT the catalogue index:\n" + plan


def main() -> list[dict[str, Any]]:
    env = {**bench_env(), "STORAGE_BACKEND": "local"}
    org_id, sample = prepare(env)
    plan = check_plan(env, org_id)
    base = f"/api/v1/orgs/{ORG_SLUG}/catalog"
    paths = {
        "catalogue list (published_at desc, 20/page)": (base, LIST_GOAL),
        "catalogue list sort=price_cents asc": (base + "?sort=price_cents&order=asc", None),
        "catalogue search q=pastry (ILIKE, a fifth of the rows match)": (base + "?q=pastry", SEARCH_GOAL),
        "catalogue search q=lesson 4321 (selective: trigram indexes)": (base + "?q=lesson%204321", SEARCH_GOAL),
        "catalogue list tag=soup (GIN)": (base + "?tag=soup", None),
        "catalogue item (detail + preview token)": (f"/api/v1/catalog/{sample}", None),
    }
    # Anonymous: one per-IP budget for every catalogue request, shared by all targets.
    ips = client_ips(10_000, CATALOG_LIMIT)
    targets = [
        Target("trivial", "trivial", "/health"),
        Target("GET /health", "codex", "/health", {"header_factory": ips}),
        *(Target(name, "codex", path, {"header_factory": ips}) for name, (path, _) in paths.items()),
        Target("list_bench", "codex_bench", base),
    ]
    results = interleaved(env, targets)
    trivial, trivial_rounds = results["trivial"]
    rows: list[dict[str, Any]] = []
    for name, (result, rounds) in results.items():
        if name == "list_bench":
            continue
        if result.statuses.get(200, 0) + result.statuses.get(429, 0) != result.requests:
            raise RuntimeError(f"unexpected statuses for {name}: {dict(result.statuses)} ({result.errors} errors)")
        goal = paths[name][1] if name in paths else None
        if goal is not None:
            bench_config = results["list_bench"] if name.startswith("catalogue list (") else None
            record_goal(name, results[name], results["trivial"], goal, bench_config=bench_config, callers=[ips])
        per_round = [a / b for a, b in zip(rounds, trivial_rounds, strict=True) if b]
        ratio = result.rps / trivial.rps if trivial.rps else 0.0
        rows.append(
            {
                "name": name,
                "req/s": round(result.rps, 1),
                "p50 ms": round(percentile(result.latencies, 50) * 1000, 2),
                "p99 ms": round(percentile(result.latencies, 99) * 1000, 2),
                "vs trivial": round(ratio, 2),
                "per round": ratio_text(per_round),
                "requests (429s)": f"{result.requests} ({result.statuses.get(429, 0)})",
                "goal": "baseline" if name == "trivial" else met_text(ratio, goal),
            }
        )
    old = results["list_bench"][0]
    rows.insert(3, {**{k: "" for k in rows[0]}, "name": "  same, former bench configuration (limits off)",
                    "req/s": round(old.rps, 1), "vs trivial": round(old.rps / trivial.rps, 2) if trivial.rps else 0,
                    "goal": "context"})  # fmt: skip
    rows.append({**{k: "" for k in rows[0]}, "name": "callers", "req/s": ips.summary()})
    rows.append({**{k: "" for k in rows[0]}, "name": f"plan of the list query ({ROWS} rows)", "goal": plan})
    print_table(rows)
    return rows


def met_text(ratio: float, goal: float | None) -> str:
    if goal is None:
        return "-"
    return f">= {goal} x trivial ({'met' if ratio >= goal else 'NOT met'})"


if __name__ == "__main__":
    main()
