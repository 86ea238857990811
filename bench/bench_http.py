"""Requests/s and latency of ``GET /health`` on the real app versus a trivial Flask app.

Both run under gunicorn with the Procfile's settings (2 workers x 4 threads), one after the
other in the same run, driven by the same closed-loop load generator (bench/common.py). The
ratio says how much the app's per-request plumbing (request id, security headers, CORS,
metrics, logging hooks) costs over Flask itself.

    python -m bench.bench_http          # or: make bench (all benchmarks + bench/RESULTS.md)

Knobs: BENCH_DURATION (s, default 10), BENCH_WARMUP (s, 2), BENCH_CONCURRENCY (16).
"""

from __future__ import annotations

from typing import Any

from bench.common import LoadResult, env_float, load, percentile, start_gunicorn

TRIVIAL_APP = "bench.trivial_app:app"
REAL_APP = "app:create_app()"
# Development mode (production refuses the local defaults); quiet logs and no rate limiting so
# that neither dominates the figure. A .env in the working directory still applies.
REAL_ENV = {"APP_ENV": "development", "LOG_LEVEL": "WARNING", "RATELIMIT_ENABLED": "false"}

# Our goal, not the spec's: the app's plumbing may cost at most half of bare Flask's throughput.
GOAL_RATIO = 0.5


def measure(app_spec: str, env: dict[str, str]) -> LoadResult:
    duration = env_float("BENCH_DURATION", 10.0)
    warmup = env_float("BENCH_WARMUP", 2.0)
    concurrency = int(env_float("BENCH_CONCURRENCY", 16))
    with start_gunicorn(app_spec, env) as server:
        return load(server.url + "/health", duration=duration, concurrency=concurrency, warmup=warmup)


def row(target: str, result: LoadResult, baseline: LoadResult | None) -> dict[str, Any]:
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
        "p99 vs trivial": round(p99 / base_p99, 2) if base_p99 else 1.0,
        "goal": f">= {GOAL_RATIO} x trivial req/s" if baseline else "baseline",
        "met": ("yes" if ratio >= GOAL_RATIO else "no") if baseline else "",
    }


def main() -> list[dict[str, Any]]:
    baseline = measure(TRIVIAL_APP, {})
    real = measure(REAL_APP, REAL_ENV)
    rows = [
        row("trivial Flask GET /health", baseline, None),
        row("Codex GET /health", real, baseline),
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
