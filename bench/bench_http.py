"""Requests/s and latency of ``GET /health`` on the real app versus a trivial Flask app.

Both run under gunicorn with the Procfile's settings (2 workers x 4 threads) for the whole run and
are loaded in turn, for BENCH_ROUNDS rounds (``bench.common.interleaved``), by the same closed-loop
load generator (bench/common.py), so that outside load (or the previous benchmark's leftovers, such
as Postgres checkpointing after bench_dashboard's million rows) hits both alike. Codex answers the
probe below Flask (app/system/fast_path.py), so the ratio says what a probe costs a web process (the
WSGI chain, the spec's response headers, the request metric) against bare Flask. Codex runs in
the production configuration (``bench.common.PRODUCTION``: limits on, INFO JSON logs to
bench/out/, the gunicorn config's multiprocess metrics, one trusted proxy, requests from 10 000
client IPs) and, as context, a second Codex in the former bench configuration (limits off,
WARNING) is loaded in the same rounds.

    python -m bench.bench_http          # or: make bench (all benchmarks + bench/RESULTS.md)

Knobs: BENCH_DURATION (s per target, default 10), BENCH_ROUNDS (5), BENCH_WARMUP (s, 2), BENCH_CONCURRENCY (16).
"""

from __future__ import annotations

from typing import Any

from bench.common import LoadResult, Target, client_ips, cost_text, interleaved, percentile, record_goal

# Development mode (production refuses the local defaults); ``interleaved`` lays the production
# configuration (limits, INFO JSON logs, multiprocess metrics, one proxy) or the former bench
# configuration over it. A .env in the working directory still applies.
REAL_ENV = {"APP_ENV": "development"}

# Issue 19's goal (ours; the spec sets none): in the production configuration, the app's
# plumbing costs at most a fifth of bare Flask's throughput.
GOAL_RATIO = 0.8
CLIENT_IPS = 10_000  # /health is unlimited; spread anyway, as a deployment's callers are


def row(target: str, result: LoadResult, baseline: LoadResult | None, rounds: str = "") -> dict[str, Any]:
    ratio = result.rps / baseline.rps if baseline and baseline.rps else 1.0
    p99 = percentile(result.latencies, 99)
    base_p99 = percentile(baseline.latencies, 99) if baseline else p99
    return {
        "target": target,
        "requests": result.requests,
        "errors": result.errors,
        "req/s": round(result.rps, 1),
        "p50 ms": round(percentile(result.latencies, 50) * 1000, 2),
        "p99 ms": round(p99 * 1000, 2),
        "req/s vs trivial": round(ratio, 2),
        "per round": rounds,
        "p99 vs trivial": round(p99 / base_p99, 2) if base_p99 else 1.0,
        "goal": f">= {GOAL_RATIO} x trivial req/s" if baseline else "baseline",
        "met": ("yes" if ratio >= GOAL_RATIO else "no") if baseline else "",
    }


def main() -> list[dict[str, Any]]:
    ips = client_ips(CLIENT_IPS, None)
    results = interleaved(
        REAL_ENV,
        [
            Target("trivial", "trivial", "/health"),
            Target("codex", "codex", "/health", {"header_factory": ips}),
            Target("codex_bench", "codex_bench", "/health"),
            Target("one_redis_get", "trivial", "/one-redis-get"),
        ],
    )
    baseline = results["trivial"][0]
    record_goal(
        "Codex GET /health", results["codex"], results["trivial"], GOAL_RATIO,
        bench_config=results["codex_bench"], callers=[ips],
    )  # fmt: skip
    rows = [
        row("trivial Flask GET /health", baseline, None),
        row("Codex GET /health (production configuration)", results["codex"][0], baseline, rounds(results, "codex")),
        row("  same, former bench configuration", results["codex_bench"][0], baseline, rounds(results, "codex_bench")),
        context_row(
            "context: trivial Flask + one Redis GET (the floor of a request that asks Redis once)",
            results["one_redis_get"][0], baseline, rounds(results, "one_redis_get"),
        ),
    ]  # fmt: skip
    print_table(rows)
    return rows


def context_row(target: str, result: LoadResult, baseline: LoadResult, per_round: str) -> dict[str, Any]:
    """A row without a goal, with what a request cost (web and Redis CPU, round trips)."""
    return {**row(target, result, baseline, per_round), "goal": cost_text(result), "met": ""}


def rounds(results: dict[str, tuple[LoadResult, list[float]]], name: str) -> str:
    """The target's ratio to the trivial app in each round, min-max."""
    per_round = [r / b for r, b in zip(results[name][1], results["trivial"][1], strict=True) if b]
    return f"{min(per_round):.2f}-{max(per_round):.2f}" if per_round else ""


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))


if __name__ == "__main__":
    main()
