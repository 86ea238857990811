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
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"  # server logs; ignored by git

Body = bytes | tuple[bytes, Mapping[str, str]] | None
BodyFactory = Callable[[], Body]
HeaderFactory = Callable[[], Mapping[str, str]]


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
    config: str | None = None,
) -> Iterator[Server]:
    """Run ``gunicorn app_spec`` on 127.0.0.1 (the Procfile's worker settings by default).

    Yields once ``ready_path`` answers 200; stops the server (SIGTERM, then SIGKILL) on exit.
    ``env`` is laid over the current environment; the working directory is the repo root.
    ``config`` is a gunicorn ``-c`` argument (the Procfile's ``python:app.gunicorn_conf``); with
    it, each server gets its own ``PROMETHEUS_MULTIPROC_DIR`` under bench/out/ unless ``env`` names
    one. stdout and stderr (gunicorn's and the app's log lines) go to a file under bench/out/,
    as a deployment's process manager would write them.
    """
    port = port or free_port()
    OUT.mkdir(parents=True, exist_ok=True)
    safe_name = "".join(c if c.isalnum() else "_" for c in app_spec).strip("_")
    log_path = OUT / f"gunicorn-{safe_name}-{port}.log"
    env = dict(env or {})
    cmd = [sys.executable, "-m", "gunicorn"]
    if config:
        cmd += ["-c", config]
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(OUT / f"prometheus-{port}"))
    cmd += [
        app_spec,
        "--workers", str(workers), "--threads", str(threads),
        "--bind", f"127.0.0.1:{port}",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, **env},
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
    # What the measured window cost (``load``'s ``meter``, and the load generator's own CPU):
    # "web_cpu" / "redis_cpu" / "client_cpu" seconds, "redis_reads" and "redis_commands" counts.
    costs: dict[str, float] = field(default_factory=dict)

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
    header_factory: HeaderFactory | None = None,
    meter: Meter | None = None,
) -> LoadResult:
    """Closed-loop load: ``concurrency`` threads, each with one keep-alive connection, send
    requests back to back for ``warmup`` seconds (discarded) and then ``duration`` seconds.

    Stops at ``max_requests`` in all as well. Returns the latency of every measured request.
    ``header_factory()`` (called once per request) gives headers that change per request: the
    signed-in user (``Users``) or the client address (``ClientIps``). ``meter()`` is read when the
    measured window starts and once the last measured request is answered; the differences (and
    this process's CPU over the same span, "client_cpu") are the result's ``costs``.
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
            request_headers = base_headers if header_factory is None else {**base_headers, **header_factory()}
            body: bytes | None = None
            if body_factory is not None:
                produced = body_factory()
                if isinstance(produced, tuple):
                    body, extra = produced
                    request_headers = {**request_headers, **extra}
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
    before: dict[str, float] = {}
    if meter is not None:
        time.sleep(max(0.0, measure_start - time.perf_counter()))
        before = {**meter(), "client_cpu": time.process_time()}
    for thread in threads:
        thread.join(timeout=warmup + duration + 30)
    costs: dict[str, float] = {}
    if meter is not None:
        after = {**meter(), "client_cpu": time.process_time()}
        costs = {name: after[name] - value for name, value in before.items()}

    merged = [value for chunk in latencies for value in chunk]
    total_statuses: Counter[int] = Counter()
    for counts in statuses:
        total_statuses.update(counts)
    elapsed = max(max(finished, default=0.0), measure_start) - measure_start
    return LoadResult(merged, elapsed, sum(errors), total_statuses, costs)


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


# ---- the production configuration ----------------------------------------------------------

# What a deployment runs (Procfile web line, docs/operations.md): limits on, one INFO JSON line per
# request on stderr, Prometheus multiprocess mode through the gunicorn config, one proxy in front.
# APP_ENV stays development (production refuses the local defaults), so the log format is named.
PRODUCTION = {
    "RATELIMIT_ENABLED": "true",
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",
    "TRUSTED_PROXY_COUNT": "1",
}
GUNICORN_CONF = "python:app.gunicorn_conf"
# The benchmarks' configuration before issue 19: no limits, no request log line, no gunicorn config.
BENCH_CONFIG = {"RATELIMIT_ENABLED": "false", "LOG_LEVEL": "WARNING", "TRUSTED_PROXY_COUNT": "0"}

WINDOW_SECONDS = 60.0  # every per-user and per-IP limit the benchmarks meet is "N per minute"
# The scheduler keeps each caller's requests this much further apart than the window: the server
# sees a request up to its latency after the scheduler hands it out.
WINDOW_MARGIN = 2.0


class Rotation:
    """Round-robin over callers (signed-in users or client IPs), one header per request, such that
    no caller sends more than ``limit`` requests in any ``WINDOW_SECONDS``.

    Request ``k`` goes to caller ``k % n``; the same caller's ``limit``-th previous request is
    request ``k - limit * n``, so when that one was handed out less than the window (plus a margin)
    ago the call waits. Spread over enough callers it never waits; ``max_per_window`` reports the
    busiest caller's count in any window, to print against the limit.

    Thread-safe; a Rotation belongs to one limit scope (share one between targets of one scope)."""

    def __init__(
        self,
        header: str,
        values: Sequence[str],
        limit: int | None,
        label: str,
        *,
        prime: bool = False,
        window: float = WINDOW_SECONDS,
        margin: float = WINDOW_MARGIN,
    ) -> None:
        if not values or (limit is not None and limit < 1):
            raise ValueError("a rotation needs callers and a positive limit")
        self.header = header
        self.values = list(values)
        self.limit = limit
        self.label = label  # e.g. "users"
        self.prime = prime  # callers with server-side state (sessions): one request each before measuring
        self.window = window
        self.margin = margin
        self.times: list[float] = []
        self.waited = 0.0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.values)

    def __call__(self) -> dict[str, str]:
        with self._lock:
            k = len(self.times)
            now = time.monotonic()
            earlier = -1 if self.limit is None else k - self.limit * len(self.values)
            if earlier >= 0:
                ready_at = self.times[earlier] + self.window + self.margin
                if now < ready_at:  # (holding the lock: every later caller would wait as well)
                    time.sleep(ready_at - now)
                    self.waited += ready_at - now
                    now = time.monotonic()
            self.times.append(now)
        return {self.header: self.values[k % len(self.values)]}

    def max_per_window(self) -> int:
        """The most requests any one caller was handed in any window (WINDOW_SECONDS)."""
        with self._lock:
            times = list(self.times)
        n, busiest = len(self.values), 0
        for caller in range(min(n, len(times))):
            mine = times[caller::n]
            first = 0
            for last, t in enumerate(mine):
                while t - mine[first] >= self.window:
                    first += 1
                busiest = max(busiest, last - first + 1)
        return busiest

    def summary(self) -> str:
        """``max 17/min per caller (limit 60), 3000 users``, for the tables."""
        waited = f", waited {self.waited:.1f} s" if self.waited else ""
        limit = "unlimited" if self.limit is None else f"limit {self.limit}"
        return f"max {self.max_per_window()}/min per caller ({limit}), {len(self)} {self.label}{waited}"


def client_ips(count: int, limit: int | None, label: str = "client IPs") -> Rotation:
    """``count`` distinct client addresses (10.x.y.z) sent as ``X-Forwarded-For``: with
    ``TRUSTED_PROXY_COUNT=1`` ProxyFix takes the last (only) entry as the client's address, as it
    would from the one proxy in front of a deployment."""
    ips = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1, count + 1)]
    return Rotation("X-Forwarded-For", ips, limit, label)


def bearer_users(tokens: Sequence[str], limit: int, label: str = "users") -> Rotation:
    return Rotation("Authorization", [f"Bearer {token}" for token in tokens], limit, label, prime=True)


# ---- interleaved targets ------------------------------------------------------------------


@dataclass
class Target:
    """One measured endpoint: on the trivial app, on Codex in the production configuration
    ("codex") or in the benchmarks' former configuration ("codex_bench"), a path (or a function of
    the running server's URL giving one), and extra ``load`` arguments (method, headers, body,
    header_factory). A ``Rotation`` of users given as ``header_factory`` is primed first: one
    request per user before the measurement, so that no user's first (cold) request lands in it."""

    name: str
    server: str  # "trivial" | "codex" | "codex_bench" | "hot_floor"
    path: str | Callable[[str], str]
    kwargs: dict[str, Any] = field(default_factory=dict)


def merge(parts: list[LoadResult]) -> LoadResult:
    statuses: Counter[int] = Counter()
    costs: Counter[str] = Counter()
    for part in parts:
        statuses.update(part.statuses)
        costs.update(part.costs)
    latencies = [value for part in parts for value in part.latencies]
    return LoadResult(latencies, sum(p.elapsed for p in parts), sum(p.errors for p in parts), statuses, dict(costs))


# ---- what a request costs ------------------------------------------------------------------

Meter = Callable[[], dict[str, float]]


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (Linux ``/proc``)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = {root}, [root]
    while frontier:
        current = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == current and pid not in found:
                found.add(pid)
                frontier.append(pid)
    return sorted(found)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes; 0.0 for those that are gone."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def pids_named(*names: str) -> list[int]:
    """Processes whose command name is one of ``names`` (``postgres``, ``redis-server``)."""
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in names:
                found.append(int(comm.parent.name))
        except OSError:
            continue
    return found


def server_meter(server: Server, redis_url: str) -> Meter:
    """What a load on ``server`` costs: its processes' CPU ("web_cpu", gunicorn's master and
    workers) and, from Redis' own counters (``INFO``), Redis' CPU ("redis_cpu"), the reads it
    processed ("redis_reads": about one per round trip, a pipeline counting once) and the commands
    it ran ("redis_commands", those inside scripts included). Redis is shared, so read it while
    only this server is loaded (``interleaved`` does); each reading adds one round trip of its own."""
    import redis

    pids = process_tree(server.proc.pid)
    client = redis.Redis.from_url(redis_url)

    def read() -> dict[str, float]:
        info = client.info()
        return {
            "web_cpu": cpu_seconds(pids),
            "redis_cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
            "redis_reads": float(info["total_reads_processed"]) - 1,  # (less this INFO's own)
            "redis_commands": float(info["total_commands_processed"]) - 1,
        }

    return read


def cost_text(result: LoadResult) -> str:
    """``web 612 µs, client 210 µs; Redis 48 µs, 1.0 round trips, 12 commands`` per measured
    request ("" without costs)."""
    costs, n = result.costs, result.requests
    if not costs or not n:
        return ""

    def micros(name: str) -> str:
        return f"{costs.get(name, 0.0) / n * 1e6:.0f} µs"

    return (
        f"web {micros('web_cpu')}, client {micros('client_cpu')}; Redis {micros('redis_cpu')}, "
        f"{costs.get('redis_reads', 0.0) / n:.1f} round trips, {costs.get('redis_commands', 0.0) / n:.1f} commands"
    )


def production_env(env: Mapping[str, str]) -> dict[str, str]:
    return {**env, **PRODUCTION}


def bench_config_env(env: Mapping[str, str]) -> dict[str, str]:
    return {**env, **BENCH_CONFIG}


@contextmanager
def codex_servers(env: Mapping[str, str], names: Collection[str]) -> Iterator[dict[str, Server]]:
    """The servers ``names`` asks for: "trivial", "codex" (production configuration over ``env``),
    "codex_bench" (the former bench configuration over ``env``), "hot_floor" (bench/hot_floor_app.py,
    the least a heartbeat or stream URL can cost, under the same gunicorn config), all up together."""
    specs: dict[str, tuple[str, dict[str, str], str | None]] = {
        "trivial": ("bench.trivial_app:app", {}, None),
        "codex": ("app:create_app()", production_env(env), GUNICORN_CONF),
        "codex_bench": ("app:create_app()", bench_config_env(env), None),
        "hot_floor": ("bench.hot_floor_app:app", dict(env), GUNICORN_CONF),
    }
    with ExitStack() as stack:
        servers = {}
        for name in ("trivial", "codex", "codex_bench", "hot_floor"):
            if name in names:
                app_spec, server_env, config = specs[name]
                servers[name] = stack.enter_context(start_gunicorn(app_spec, server_env, config=config))
        yield servers


def prime(url: str, target: Target, concurrency: int) -> LoadResult | None:
    """One request per caller of the target's ``Rotation`` (if it asks for it), unmeasured."""
    rotation = target.kwargs.get("header_factory")
    if not isinstance(rotation, Rotation) or not rotation.prime:
        return None
    every = len(rotation) + concurrency - 1  # (load caps each thread at max_requests // concurrency)
    return load(url, duration=600, concurrency=concurrency, warmup=0, max_requests=every, **target.kwargs)


def interleaved(
    env: dict[str, str], targets: list[Target], servers: Mapping[str, Server] | None = None
) -> dict[str, tuple[LoadResult, list[float]]]:
    """Measure the targets (on the trivial app, or on Codex run with ``env`` in the production or
    the former bench configuration) in turn, in BENCH_ROUNDS rounds of BENCH_DURATION / rounds
    seconds each; ``servers`` (from ``codex_servers``) when the caller already started them.

    All servers (each with the Procfile's 2 workers x 4 threads) run for the whole measurement,
    but only the target being measured gets requests, so they never share the CPUs. Rounds make
    the ratios robust on a shared machine: load from other processes that comes and goes during
    the run hits every target alike instead of whichever one happened to be measured at the time.
    Returns each target's merged result and its rps per round; 429s are in ``statuses``, and what
    its measured requests cost (server and Redis CPU, Redis round trips) in ``costs``."""
    if servers is None:
        with codex_servers(env, {t.server for t in targets}) as started:
            return interleaved(env, targets, started)
    duration = env_float("BENCH_DURATION", 10.0)
    warmup = env_float("BENCH_WARMUP", 2.0)
    concurrency = int(env_float("BENCH_CONCURRENCY", 16))
    rounds = max(1, int(env_float("BENCH_ROUNDS", 5)))
    parts: dict[str, list[LoadResult]] = {t.name: [] for t in targets}
    paths = {t.name: t.path(servers[t.server].url) if callable(t.path) else t.path for t in targets}
    for t in targets:
        prime(servers[t.server].url + paths[t.name], t, concurrency)
    redis_url = env.get("REDIS_URL") or os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    meters = {name: server_meter(server, redis_url) for name, server in servers.items()}
    for round_ in range(rounds):
        for t in targets:
            result = load(
                servers[t.server].url + paths[t.name],
                duration=duration / rounds,
                concurrency=concurrency,
                warmup=warmup if round_ == 0 else min(warmup, 0.5),  # later rounds: reconnect only
                meter=meters[t.server],
                **t.kwargs,
            )
            parts[t.name].append(result)
    return {name: (merge(results), [r.rps for r in results]) for name, results in parts.items()}


# ---- the production summary (bench/RESULTS.md's first table) ----------------------------------

# One row per goal of issue 19, added by the benchmarks as they run; bench/run.py writes them.
SUMMARY: list[dict[str, Any]] = []


def ratio_text(values: Sequence[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def record_goal(
    target: str,
    measured: tuple[LoadResult, list[float]],
    baseline: tuple[LoadResult, list[float]],
    goal: float,
    *,
    baseline_name: str = "trivial",
    bench_config: tuple[LoadResult, list[float]] | None = None,
    floor: tuple[LoadResult, list[float]] | None = None,
    callers: Sequence[Rotation] = (),
) -> dict[str, Any]:
    """Add the production-configuration row of ``target`` (ratio of its req/s to ``baseline``'s in
    the same interleaved run) to SUMMARY and return it. ``bench_config``: the same target on the
    former bench configuration, as context; ``floor``: the least possible endpoint for it
    (bench/hot_floor_app.py; bench/webhook_floor_app.py with ``FLOOR_PRODUCTION=1``), whose ratio
    bounds what the target can reach."""
    (result, rounds), (base, base_rounds) = measured, baseline
    ratio = result.rps / base.rps if base.rps else 0.0
    per_round = [a / b for a, b in zip(rounds, base_rounds, strict=True) if b]
    too_many = result.statuses.get(429, 0)
    row = {
        "target": target,
        "goal": f">= {goal} x {baseline_name}",
        "measured": round(ratio, 2),
        "per round": ratio_text(per_round),
        "met": "INVALID (429s)" if too_many else ("yes" if ratio >= goal else "no"),
        "req/s": round(result.rps, 1),
        "429s": too_many,
        "other errors": result.errors - too_many,
        "former bench config": "",
        "least possible (floor)": "",
        "callers": "; ".join(rotation.summary() for rotation in callers),
        "cost per request": cost_text(result),
        "baseline cost per request": cost_text(base),
    }
    if bench_config is not None:
        old, old_rounds = bench_config
        old_per_round = [a / b for a, b in zip(old_rounds, base_rounds, strict=True) if b]
        row["former bench config"] = f"{old.rps / base.rps:.2f} ({ratio_text(old_per_round)})" if base.rps else "-"
    if floor is not None:
        least, least_rounds = floor
        least_per_round = [a / b for a, b in zip(least_rounds, base_rounds, strict=True) if b]
        costs = cost_text(least)
        row["least possible (floor)"] = (
            f"{least.rps / base.rps:.2f} ({ratio_text(least_per_round)})" + (f"; {costs}" if costs else "")
            if base.rps
            else "-"
        )
    SUMMARY.append(row)
    return row


def base_env(database: str, cache_db: int, broker_db: int) -> dict[str, str]:
    """A benchmark server's database and Redis DBs on ``DATABASE_URL``'s and ``REDIS_URL``'s
    servers, in the former bench configuration (``production_env`` lays PRODUCTION over it)."""
    from sqlalchemy.engine import make_url

    base_db = os.environ.get("DATABASE_URL", "postgresql+psycopg://localhost:5432/codex")
    base_redis = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    redis_root = base_redis.rsplit("/", 1)[0] if base_redis.count("/") >= 3 else base_redis.rstrip("/")
    return {
        "APP_ENV": "development",
        "LOG_LEVEL": "WARNING",
        "RATELIMIT_ENABLED": "false",
        "DATABASE_URL": make_url(base_db).set(database=database).render_as_string(hide_password=False),
        "REDIS_URL": f"{redis_root}/{cache_db}",
        "CELERY_BROKER_URL": f"{redis_root}/{broker_db}",
    }


def explain_all(flask_app: Any, funcs: Sequence[Callable[[], Any]]) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) every SELECT the calls send, with their parameters."""
    from sqlalchemy import event

    engine = flask_app.extensions["db"].engine
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        for func in funcs:
            func()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    report = []
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for statement, parameters in captured:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            report.append(f"-- statement\n{statement}\n-- plan\n{plan}\n")
        raw.rollback()
    finally:
        raw.close()
    return "\n".join(report)


def org_admin_tokens(db_url: str, org_id: Any, count: int, prefix: str) -> list[str]:
    """``count`` admins of the org (``{prefix}-admin-{i}@example.com``, made once and kept), each
    with one fresh session: a dashboard benchmark spreads its requests over them (``bearer_users``)
    so that none passes the per-user limit of 300 a minute."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import create_engine, text

    from app.identity.sessions import new_token

    now = datetime.now(UTC)
    tokens = []
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            for i in range(count):
                email = f"{prefix}-admin-{i}@example.com"
                user_id = conn.scalar(text("SELECT id FROM users WHERE email = :e"), {"e": email})
                if user_id is None:
                    user_id = uuid.uuid4()
                    conn.execute(
                        text("INSERT INTO users (id, email, name, email_verified_at) VALUES (:u, :e, :n, :t)"),
                        {"u": user_id, "e": email, "n": f"Bench Admin {i}", "t": now},
                    )
                    conn.execute(
                        text("INSERT INTO memberships (organization_id, user_id, role) VALUES (:o, :u, 'admin')"),
                        {"o": org_id, "u": user_id},
                    )
                token, token_hash = new_token()
                conn.execute(text("DELETE FROM sessions WHERE user_id = :u"), {"u": user_id})
                conn.execute(
                    text(
                        "INSERT INTO sessions (user_id, token_hash, expires_at, last_seen_at) VALUES (:u, :h, :e, :n)"
                    ),
                    {"u": user_id, "h": token_hash, "e": now + timedelta(hours=24), "n": now},
                )
                tokens.append(token)
    finally:
        engine.dispose()
    return tokens
