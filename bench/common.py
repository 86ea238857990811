"""Pieces shared by the benchmarks: start gunicorn, drive load at it, summarise latencies.

Every target is on 127.0.0.1 and every load run is bounded in time and in request count.
A benchmark module uses them like this::

    with start_gunicorn("app:create_app()", env={"LOG_LEVEL": "WARNING"}) as server:
        result = load(server.url + "/health", duration=10, concurrency=16)
    print(result.rps, percentile(result.latencies, 99))

``body_factory`` (called once per request) returns the body, or ``(body, extra_headers)`` when a
header depends on the body (a webhook signature, say).
"""

from __future__ import annotations

import http.client
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"  # server logs; ignored by git

Body = bytes | tuple[bytes, Mapping[str, str]] | None
BodyFactory = Callable[[], Body]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def env_float(name: str, default: float) -> float:
    """A knob read from the environment (BENCH_DURATION=2 make bench for a quick run)."""
    raw = os.environ.get(name)
    return float(raw) if raw else default


# ---- servers -------------------------------------------------------------------------------


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def start_gunicorn(
    app_spec: str,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    *,
    workers: int = 2,
    threads: int = 4,
    ready_path: str = "/health",
    timeout: float = 30.0,
) -> Iterator[Server]:
    """Run ``gunicorn app_spec`` on 127.0.0.1 (the Procfile's worker settings by default).

    Yields once ``ready_path`` answers 200; stops the server (SIGTERM, then SIGKILL) on exit.
    ``env`` is laid over the current environment; the working directory is the repo root.
    """
    port = port or free_port()
    OUT.mkdir(parents=True, exist_ok=True)
    safe_name = "".join(c if c.isalnum() else "_" for c in app_spec).strip("_")
    log_path = OUT / f"gunicorn-{safe_name}-{port}.log"
    cmd = [
        sys.executable, "-m", "gunicorn", app_spec,
        "--workers", str(workers), "--threads", str(threads),
        "--bind", f"127.0.0.1:{port}",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one below
        )
    server = Server(proc, port, log_path)
    try:
        _wait_ready(server, ready_path, timeout)
        yield server
    finally:
        _stop(proc)


def _wait_ready(server: Server, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.proc.returncode}:\n{_tail(server.log_path)}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn not ready within {timeout:.0f}s:\n{_tail(server.log_path)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---- load ----------------------------------------------------------------------------------


@dataclass
class LoadResult:
    latencies: list[float]  # seconds, one per completed request of the measured window
    elapsed: float  # seconds of the measured window
    errors: int = 0  # connection errors and unexpected statuses
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0


def load(
    url: str,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    body_factory: BodyFactory | None = None,
    duration: float = 10.0,
    concurrency: int = 16,
    *,
    warmup: float = 2.0,
    max_requests: int = 2_000_000,
    ok_statuses: Sequence[int] = (200,),
) -> LoadResult:
    """Closed-loop load: ``concurrency`` threads, each with one keep-alive connection, send
    requests back to back for ``warmup`` seconds (discarded) and then ``duration`` seconds.

    Stops at ``max_requests`` in all as well. Returns the latency of every measured request.
    """
    parts = urlsplit(url)
    if parts.hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError("benchmarks only target this machine")
    host, port = parts.hostname, parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    base_headers = dict(headers or {})
    per_thread_cap = max(1, max_requests // concurrency)

    start_barrier = threading.Barrier(concurrency + 1)
    measure_start = 0.0
    measure_end = 0.0
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    finished: list[float] = [0.0] * concurrency
    errors = [0] * concurrency
    statuses: list[Counter[int]] = [Counter() for _ in range(concurrency)]

    def worker(index: int) -> None:
        mine = latencies[index]
        counts = statuses[index]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        start_barrier.wait()
        sent = 0
        while sent < per_thread_cap:
            begin = time.perf_counter()
            if begin >= measure_end:
                break
            request_headers = base_headers
            body: bytes | None = None
            if body_factory is not None:
                produced = body_factory()
                if isinstance(produced, tuple):
                    body, extra = produced
                    request_headers = {**base_headers, **extra}
                else:
                    body = produced
            try:
                conn.request(method, path, body=body, headers=request_headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors[index] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
                continue
            end = time.perf_counter()
            if begin >= measure_start:
                sent += 1
                mine.append(end - begin)
                counts[response.status] += 1
                finished[index] = end
                if response.status not in ok_statuses:
                    errors[index] += 1
            if response.will_close:
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    now = time.perf_counter()
    measure_start = now + warmup
    measure_end = measure_start + duration
    start_barrier.wait()
    for thread in threads:
        thread.join(timeout=warmup + duration + 30)

    merged = [value for chunk in latencies for value in chunk]
    total_statuses: Counter[int] = Counter()
    for counts in statuses:
        total_statuses.update(counts)
    elapsed = max(max(finished, default=0.0), measure_start) - measure_start
    return LoadResult(merged, elapsed, sum(errors), total_statuses)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


# ---- interleaved targets ------------------------------------------------------------------


@dataclass
class Target:
    """One measured endpoint: on the trivial app or on Codex, a path (or a function of the running
    Codex server's URL giving one), and extra ``load`` arguments (method, headers, body)."""

    name: str
    server: str  # "trivial" | "codex"
    path: str | Callable[[str], str]
    kwargs: dict[str, Any] = field(default_factory=dict)


def merge(parts: list[LoadResult]) -> LoadResult:
    statuses: Counter[int] = Counter()
    for part in parts:
        statuses.update(part.statuses)
    latencies = [value for part in parts for value in part.latencies]
    return LoadResult(latencies, sum(p.elapsed for p in parts), sum(p.errors for p in parts), statuses)


def interleaved(env: dict[str, str], targets: list[Target]) -> dict[str, tuple[LoadResult, list[float]]]:
    """Measure the targets (on the trivial app, or on Codex run with ``env``) in turn, in
    BENCH_ROUNDS rounds of BENCH_DURATION / rounds seconds each.

    Both servers (the trivial app and Codex, each with the Procfile's 2 workers x 4 threads) run
    for the whole measurement, but only the target being measured gets requests, so they never
    share the CPUs. Rounds make the ratios robust on a shared machine: load from other processes
    that comes and goes during the run hits every target alike instead of whichever one happened
    to be measured at the time. Returns each target's merged result and its rps per round."""
    duration = env_float("BENCH_DURATION", 10.0)
    warmup = env_float("BENCH_WARMUP", 2.0)
    concurrency = int(env_float("BENCH_CONCURRENCY", 16))
    rounds = max(1, int(env_float("BENCH_ROUNDS", 5)))
    parts: dict[str, list[LoadResult]] = {t.name: [] for t in targets}
    with start_gunicorn("bench.trivial_app:app", {}) as trivial, start_gunicorn("app:create_app()", env) as codex:
        servers = {"trivial": trivial, "codex": codex}
        paths = {t.name: t.path(codex.url) if callable(t.path) else t.path for t in targets}
        for round_ in range(rounds):
            for t in targets:
                result = load(
                    servers[t.server].url + paths[t.name],
                    duration=duration / rounds,
                    concurrency=concurrency,
                    warmup=warmup if round_ == 0 else min(warmup, 0.5),  # later rounds: reconnect only
                    **t.kwargs,
                )
                parts[t.name].append(result)
    return {name: (merge(results), [r.rps for r in results]) for name, results in parts.items()}
