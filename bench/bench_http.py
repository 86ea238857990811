"""Requests/s and latency of ``GET /health`` on the real app versus a trivial Flask app.

Both run under gunicorn with the Procfile's settings (2 workers x 4 threads) for the whole run and
are loaded in turn, for BENCH_ROUNDS rounds (``bench.common.interleaved``), by the same closed-loop
load generator (bench/common.py), so that outside load (or the previous benchmark's leftovers, such
as Postgres checkpointing after bench_dashboard's million rows) hits both alike. The ratio says how
much the app's per-request plumbing (request id, security headers, CORS, metrics, logging hooks)
costs over Flask itself.

    python -m bench.bench_http          # or: make bench (all benchmarks + bench/RESULTS.md)

Knobs: BENCH_DURATION (s per target, default 10), BENCH_ROUNDS (5), BENCH_WARMUP (s, 2), BENCH_CONCURRENCY (16).
"""

from __future__ import annotations

from typing import Any

from bench.common import LoadResult, Target, interleaved, percentile

# Development mode (production refuses the local defaults); quiet logs and no rate limiting so
# that neither dominates the figure. A .env in the working directory still applies.
REAL_ENV = {"APP_ENV": "development", "LOG_LEVEL": "WARNING", "RATELIMIT_ENABLED": "false"}

# Our goal, not the spec's: the app's plumbing may cost at most half of bare Flask's throughput.
GOAL_RATIO = 0.5


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
    results = interleaved(REAL_ENV, [Target("trivial", "trivial", "/health"), Target("codex", "codex", "/health")])
    (baseline, base_rounds), (real, real_rounds) = results["trivial"], results["codex"]
    per_round = [r / b for r, b in zip(real_rounds, base_rounds, strict=True) if b]
    rows = [
        row("trivial Flask GET /health", baseline, None),
        row("Codex GET /health", real, baseline, f"{min(per_round):.2f}-{max(per_round):.2f}" if per_round else ""),
    ]
    print_table(rows)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths, strict=True)))


if __name__ == "__main__":
    main()
