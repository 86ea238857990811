"""How far below the webhook goal the least possible endpoint already is (issue 6's 0.5 x).

bench_webhooks measures Codex's ``POST /webhooks/stripe`` against the trivial ``GET /health``
(goal: at least half its requests/s). This measures, the same way (both servers up, loaded in
turn for BENCH_ROUNDS rounds, same signed ~3 KB deliveries), ``bench/webhook_floor_app.py``: a
bare WSGI callable doing only what the spec requires before answering 200 (signature check,
parse, one durable INSERT into ``stripe_events``, one LPUSH), with none of Flask, logging,
metrics or error handling. Whatever Codex does, it cannot beat this floor on the same machine;
if the floor is below 0.5 x, the goal is out of reach for a Python web tier that stores each
delivery in Postgres on these 2 cores. The database is bench_webhooks' (created and dropped).

    python bench/run.py webhook_floor
"""

from __future__ import annotations

from typing import Any

import redis

from bench.bench_auth import print_table
from bench.bench_webhooks import GOAL_RATIO, Deliveries, bench_database, seed, settings
from bench.common import env_float, load, start_gunicorn


def main() -> list[dict[str, Any]]:
    env = settings()
    duration = env_float("BENCH_DURATION", 10.0)
    warmup = env_float("BENCH_WARMUP", 2.0)
    concurrency = int(env_float("BENCH_CONCURRENCY", 16))
    rounds = max(1, int(env_float("BENCH_ROUNDS", 5)))
    broker = redis.Redis.from_url(env["CELERY_BROKER_URL"])
    with bench_database(env["DATABASE_URL"]) as engine:
        deliveries = Deliveries(seed(engine, 10), "floor")
        rps: dict[str, list[float]] = {"trivial": [], "floor": []}
        with (
            start_gunicorn("bench.trivial_app:app", {}) as trivial,
            start_gunicorn("bench.webhook_floor_app:app", env) as floor,
        ):
            for round_ in range(rounds):
                part_warmup = warmup if round_ == 0 else min(warmup, 0.5)
                common: dict[str, Any] = {
                    "duration": duration / rounds, "concurrency": concurrency, "warmup": part_warmup
                }  # fmt: skip
                rps["trivial"].append(load(trivial.url + "/health", **common).rps)
                result = load(floor.url + "/webhooks/stripe", method="POST", body_factory=deliveries, **common)
                if result.errors or set(result.statuses) != {200}:
                    raise RuntimeError(f"floor app answered {dict(result.statuses)} ({result.errors} errors)")
                rps["floor"].append(result.rps)
    broker.delete("bench:floor")
    trivial_rps = sum(rps["trivial"]) / rounds
    floor_rps = sum(rps["floor"]) / rounds
    per_round = [f / t for f, t in zip(rps["floor"], rps["trivial"], strict=True)]
    ratio = floor_rps / trivial_rps
    verdict = "above" if ratio >= GOAL_RATIO else "the floor is below it"
    rows = [
        {"name": "trivial Flask GET /health", "req/s": round(trivial_rps, 1), "vs trivial": 1.0, "per round": "",
         "goal": "baseline"},
        {"name": "floor: bare WSGI verify + parse + INSERT + LPUSH", "req/s": round(floor_rps, 1),
         "vs trivial": round(ratio, 2), "per round": f"{min(per_round):.2f}-{max(per_round):.2f}",
         "goal": f"issue 6 asks >= {GOAL_RATIO} x of Codex: {verdict}"},
    ]  # fmt: skip
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
