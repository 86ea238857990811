"""In-process CPU per webhook delivery: Codex's WSGI app (production configuration) next to the bare
floor callable (bench/webhook_floor_app.py), called directly with prebuilt signed deliveries.

Why: on 2 shared cores the HTTP benches (bench_webhooks, bench_webhook_floor) swing by +-20 % from
round to round; the CPU each delivery costs is what decides their ratio, and it is measured here
without a load generator or gunicorn. For each target, ``BENCH_PROFILE_DELIVERIES`` (3000) distinct
new events are answered one after another on one thread, after a warm-up, the two targets taking
turns every 100 deliveries (outside load falls on both alike); reported per delivery:
this process's CPU (``time.process_time``), the Redis server's (``INFO cpu``) and the Postgres
backends serving its database (``/proc``). ``--profile``
prints cProfile's top functions for Codex's app.

Setup: its own database (``codex_bench_profile_webhook`` on ``DATABASE_URL``'s server, created,
migrated and dropped), Redis DBs 12 (broker) and 13 (cache) on ``REDIS_URL``'s server, flushed;
``PROMETHEUS_MULTIPROC_DIR`` a fresh temporary directory; the app's log lines (stderr) go to a file (as under
gunicorn, where stdout is the process manager's file).

    python -m bench.profile_webhook [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DB_NAME = "codex_bench_profile_webhook"
SECRET = "whsec_codex_local"


def _env() -> dict[str, str]:
    from bench.common import base_env, production_env

    env = production_env({**base_env(DB_NAME, 13, 12), "STRIPE_WEBHOOK_SECRET": SECRET, "PAYMENT_PROVIDER": "local"})
    env["MAIL_BACKEND"] = "memory"
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="codex-profile-webhook-")
    return env


@contextmanager
def _log_to_file(path: Path) -> Any:
    """fd 2 (the app's log lines: stderr) into ``path`` while the block runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("wb") as sink:
        os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _pg_cpu(pids: list[int]) -> float:
    from bench.common import cpu_seconds

    return cpu_seconds(pids)


def _redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


class Environs:
    """Prebuilt WSGI environs of distinct signed deliveries (built before the clock starts)."""

    def __init__(self, data: dict[str, Any], prefix: str, count: int) -> None:
        from app.payments.signature import sign
        from bench.bench_webhooks import event_body

        template = event_body("evt_@@@@@@@@@@@@@@@@@@@@@@@@", data["customers"][0], data, data["session"])
        self.items = []
        for n in range(count):
            body = template.replace(b"evt_@@@@@@@@@@@@@@@@@@@@@@@@", f"evt_{prefix}{n:022d}".encode())
            self.items.append((body, sign(body, SECRET), f"10.{n % 250}.{n // 250 % 250}.7"))

    def environ(self, index: int) -> dict[str, Any]:
        body, signature, ip = self.items[index]
        return {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": "/webhooks/stripe",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_STRIPE_SIGNATURE": signature,
            "HTTP_X_FORWARDED_FOR": ip,
            "HTTP_HOST": "127.0.0.1:8000",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }


def run(app: Callable[..., Iterable[bytes]], environs: Environs | _Shifted, start: int, count: int) -> list[str]:
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        statuses.append(status)

    for index in range(start, start + count):
        result = app(environs.environ(index), start_response)
        for _ in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return statuses


def measure(
    targets: dict[str, tuple[Any, Environs | _Shifted]], warmup: int, count: int, redis_client: Any, engine: Any
) -> dict:
    """Each target's CPU per delivery over ``count`` deliveries, the targets taking turns in batches
    of ``BATCH`` so that load from outside (a shared machine) falls on all of them alike."""
    for app, environs in targets.values():
        run(app, environs, 0, warmup)
    backends = _backends(engine)
    used = {name: {"web": 0.0, "postgres": 0.0, "redis": 0.0, "wall": 0.0} for name in targets}
    for start in range(warmup, warmup + count, BATCH):
        for name, (app, environs) in targets.items():
            pg, rd = _pg_cpu(backends), _redis_cpu(redis_client)
            cpu, wall = time.process_time(), time.perf_counter()
            statuses = run(app, environs, start, BATCH)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            totals = used[name]
            totals["web"] += cpu
            totals["wall"] += wall
            totals["postgres"] += _pg_cpu(backends) - pg
            totals["redis"] += _redis_cpu(redis_client) - rd
            if set(statuses) != {"200 OK"}:
                raise RuntimeError(f"{name}: {sorted(set(statuses))}")
    return {name: {k: v / count * 1e6 for k, v in totals.items()} for name, totals in used.items()}


BATCH = 100


def _line(name: str, per: dict[str, float]) -> str:
    return (
        f"{name:<8} web {per['web']:7.1f} us   postgres {per['postgres']:6.1f} us   redis {per['redis']:5.1f} us"
        f"   total {per['web'] + per['postgres'] + per['redis']:7.1f} us   wall {per['wall']:7.1f} us\n"
    )


def _backends(engine: Any) -> list[int]:
    """The Postgres backends serving this database (the app's pool and the floor's connection)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"),
                {"db": DB_NAME},
            ).scalars()
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--profile", action="store_true", help="cProfile Codex's app (top 40 by own time)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = _env()
    os.environ.update(env)
    count = int(os.environ.get("BENCH_PROFILE_DELIVERIES", "3000"))
    warmup = 300

    import redis

    from bench import bench_webhooks

    bench_webhooks.DB_NAME = DB_NAME  # (bench_database creates and drops the database of that name)
    with bench_webhooks.bench_database(env["DATABASE_URL"]) as engine:
        data = bench_webhooks.seed(engine, 10)
        for key in ("CELERY_BROKER_URL", "REDIS_URL"):
            redis.Redis.from_url(env[key]).flushdb()
        redis_client = redis.Redis.from_url(env["REDIS_URL"])
        log_path = Path(env["PROMETHEUS_MULTIPROC_DIR"]) / "app.log"
        with _log_to_file(log_path):
            from app import create_app
            from bench import webhook_floor_app

            codex = create_app()
            total = (warmup + count) * args.rounds
            codex_environs = Environs(data, "cdx", total + (warmup + count if args.profile else 0))
            floor_environs = Environs(data, "flr", total)
            results: dict[str, list[dict[str, float]]] = {"codex": [], "floor": []}
            lines = []
            for round_ in range(args.rounds):
                offset = round_ * (warmup + count)
                targets: dict[str, tuple[Any, Environs | _Shifted]] = {
                    "codex": (codex, _Shifted(codex_environs, offset)),
                    "floor": (webhook_floor_app.app, _Shifted(floor_environs, offset)),
                }
                per = measure(targets, warmup, count, redis_client, engine)
                for name in targets:
                    results[name].append(per[name])
                    lines.append(_line(name, per[name]))
                lines.append(
                    f"  round {round_ + 1}: web CPU codex / floor {per['codex']['web'] / per['floor']['web']:.2f}\n"
                )
            stats_text = ""
            if args.profile:
                shifted = _Shifted(codex_environs, total)
                run(codex, shifted, 0, warmup)
                profiler = cProfile.Profile(time.process_time)  # CPU, not waits
                profiler.enable()
                run(codex, shifted, warmup, count)
                profiler.disable()
                stream = io.StringIO()
                pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(40)
                stream.write("\n")
                pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(60)
                stats_text = stream.getvalue()
        with engine.connect() as conn:
            from sqlalchemy import text

            stored = conn.execute(text("SELECT count(*) FROM stripe_events WHERE id LIKE 'evt_cdx%'")).scalar_one()
        queued = redis.Redis.from_url(env["CELERY_BROKER_URL"]).llen("webhooks")
        for key in ("CELERY_BROKER_URL", "REDIS_URL"):
            redis.Redis.from_url(env[key]).flushdb()
    print("".join(lines), end="")
    for name, rounds in results.items():
        best = min(rounds, key=lambda p: p["web"])
        print(
            f"{name} best round: web {best['web']:.1f} us, web+postgres+redis "
            f"{best['web'] + best['postgres'] + best['redis']:.1f} us"
        )
    codex_web = min(p["web"] for p in results["codex"])
    floor_web = min(p["web"] for p in results["floor"])
    print(f"web CPU codex / floor: {codex_web / floor_web:.2f}; rows stored {stored}, messages queued {queued}")
    print(stats_text)


class _Shifted:
    """``environs`` from ``offset`` on (each round, and the profile, uses new event ids)."""

    def __init__(self, environs: Environs, offset: int) -> None:
        self.environs = environs
        self.offset = offset

    def environ(self, index: int) -> dict[str, Any]:
        return self.environs.environ(self.offset + index)


if __name__ == "__main__":
    main()
