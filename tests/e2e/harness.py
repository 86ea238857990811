"""Real processes for the end-to-end and chaos tests: a private Redis, gunicorn, Celery workers, beat.

Everything runs on 127.0.0.1 with an environment pointing at the per-run test database
(``tests/conftest.py``), a ``redis-server`` of its own on a free port (so a test can restart it
without disturbing anyone), the SMTP sink and the shared local storage root. Each process has
its own session (process group): ``stop`` sends SIGTERM then SIGKILL to the whole group, and
``kill`` SIGKILLs it at once (a crashed host, prefork children included). Output goes to one
log file per process under the test's ``tmp_path``; ``Stack.report()`` shows their tails.

``fast_clocks=True`` starts Celery through ``tests.e2e.fastclock``, which shortens the leases,
sweep delays and beat intervals (seconds instead of minutes) without changing any code path.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_lib

from tests.conftest import ROOT, free_port

STOP_TIMEOUT = 15.0
_LIVE: dict[int, Proc] = {}  # process groups started and not yet reaped, for the last-resort cleanup


def _kill_all_groups() -> None:
    for pid, proc in list(_LIVE.items()):
        if proc.popen is not None and proc.popen.poll() is None:  # not reaped: the pid is still ours
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def _on_sigterm(signum: int, frame: Any) -> None:
    """pytest killed (``timeout``, CI cancel): take the process groups down with it, then die."""
    _kill_all_groups()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_cleanup() -> None:
    """No orphans even when pytest itself is killed: SIGTERM and interpreter exit kill every group."""
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        return
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
        atexit.register(_kill_all_groups)


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Proc:
    """One subprocess in its own process group, output to ``log_path``."""

    name: str
    cmd: list[str]
    env: Mapping[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> Proc:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start #{self.starts} at {time.strftime('%H:%M:%S')}: {' '.join(self.cmd)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env=dict(self.env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _LIVE[self.popen.pid] = self
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group (main process and children) and reap it."""
        if self.popen is None:
            return
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=STOP_TIMEOUT)
        _LIVE.pop(self.popen.pid, None)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after ``STOP_TIMEOUT``; always SIGKILLs leftovers of the group."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=STOP_TIMEOUT)
        self._signal_group(signal.SIGKILL)  # children that outlived their parent
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        _LIVE.pop(self.popen.pid, None)

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)


class RedisServer:
    """A private ``redis-server`` (no persistence): a restart loses every key, as a crash would."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc = Proc(
            "redis",
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(log_dir)],
            dict(os.environ),
            log_dir / "redis.log",
        )  # fmt: skip

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 20.0) -> None:
        self.proc.start()
        client = redis_lib.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        try:
            wait_until(lambda: _pings(client), timeout, "redis-server answering PING", self.proc.tail)
        finally:
            client.close()

    def stop(self) -> None:
        self.proc.stop()

    def restart(self, down_for: float = 0.5) -> None:
        self.proc.kill()
        time.sleep(down_for)
        self.start()


def _pings(client: redis_lib.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, details: Callable[[], str] | None = None, poll: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(poll)
    raise AssertionError(f"not reached within {timeout:.0f}s: {what}\n{details() if details else ''}")


def http_status(port: int, path: str, timeout: float = 2.0) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


@dataclass
class Stack:
    """The processes of one test; ``close()`` stops them all (also when the test failed)."""

    log_dir: Path
    env: dict[str, str]
    redis: RedisServer
    fast_clocks: bool = False
    procs: dict[str, Proc] = field(default_factory=dict)
    web_port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def _celery_cmd(self, *args: str) -> list[str]:
        target = "tests.e2e.fastclock" if self.fast_clocks else "tasks.worker"
        return [sys.executable, "-m", "celery", "-A", target, *args]

    def add(self, name: str, cmd: list[str], extra_env: Mapping[str, str] | None = None) -> Proc:
        proc = Proc(name, cmd, {**self.env, **(extra_env or {})}, self.log_dir / f"{name}.log")
        self.procs[name] = proc
        return proc

    def start_web(self, workers: int = 2, threads: int = 4, timeout: float = 60.0) -> Proc:
        cmd = [
            sys.executable, "-m", "gunicorn", "app:create_app()",
            "--workers", str(workers), "--threads", str(threads),
            "--bind", f"127.0.0.1:{self.web_port}", "--graceful-timeout", "5",
        ]  # fmt: skip
        proc = self.add("web", cmd).start()
        wait_until(
            lambda: not proc.alive() or http_status(self.web_port, "/health/ready") == 200,
            timeout,
            "gunicorn /health/ready",
            self.report,
        )
        assert proc.alive(), f"gunicorn exited\n{self.report()}"
        return proc

    def worker_cmd(self, name: str, queues: str, concurrency: int) -> list[str]:
        return self._celery_cmd(
            "worker", "-Q", queues, "--concurrency", str(concurrency), "--prefetch-multiplier", "1",
            "--without-mingle", "--without-gossip", "-n", f"{name}@%h", "--loglevel", "WARNING",
        )  # fmt: skip

    def start_worker(
        self,
        name: str = "worker",
        queues: str = "webhooks,email,media,playback,default",
        concurrency: int = 2,
        *,
        wait: bool = True,
    ) -> Proc:
        proc = self.add(name, self.worker_cmd(name, queues, concurrency)).start()
        if wait:
            self.wait_worker(name)
        return proc

    def wait_worker(self, name: str, timeout: float = 90.0) -> None:
        proc = self.procs[name]
        wait_until(
            lambda: not proc.alive() or self.worker_answers(name),
            timeout,
            f"celery worker {name} answering a control ping",
            self.report,
            poll=0.5,
        )
        assert proc.alive(), f"worker {name} exited\n{self.report()}"

    def worker_answers(self, name: str) -> bool:
        from celery import Celery

        probe = Celery("probe", broker=self.env["CELERY_BROKER_URL"], set_as_current=False)
        try:
            replies = probe.control.ping(timeout=0.5)
        except Exception:  # broker down or restarting: not ready yet
            return False
        finally:
            probe.close()
        return any(next(iter(reply)).startswith(f"{name}@") for reply in replies)

    def start_beat(self) -> Proc:
        return self.add("beat", self._celery_cmd("beat", "-s", str(self.log_dir / "celerybeat-schedule"),
                                                 "--loglevel", "WARNING")).start()  # fmt: skip

    def report(self, lines: int = 30) -> str:
        parts = []
        for proc in [self.redis.proc, *self.procs.values()]:
            state = "running" if proc.alive() else f"exited {proc.popen.returncode if proc.popen else '-'}"
            parts.append(f"--- {proc.name} ({state}, started {proc.starts}x) {proc.log_path}\n{proc.tail(lines)}")
        return "\n".join(parts)

    def close(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
        self.redis.stop()


def stack_env(
    database_url: str,
    redis: RedisServer,
    storage_root: Path,
    web_port: int,
    smtp_port: int | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment every process of a stack shares (the app reads only its own variables)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "COV_"))}
    env.update(
        {
            "APP_ENV": "test",
            "DATABASE_URL": database_url,
            "DATABASE_POOL_SIZE": "3",
            "REDIS_URL": redis.url(0),
            "CELERY_BROKER_URL": redis.url(1),
            "RATELIMIT_ENABLED": "false",
            "STORAGE_BACKEND": "local",
            "STORAGE_LOCAL_ROOT": str(storage_root),
            "PAYMENT_PROVIDER": "local",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
            "PYTHONWARNINGS": "ignore",
        }
    )
    if smtp_port is not None:
        env.update({"MAIL_BACKEND": "smtp", "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(smtp_port)})
    else:
        env["MAIL_BACKEND"] = "file"
    env.update(extra)
    return env


@contextlib.contextmanager
def running_stack(
    tmp_path: Path,
    database_url: str,
    storage_root: Path,
    *,
    smtp_port: int | None = None,
    fast_clocks: bool = False,
    **extra: str,
) -> Iterator[Stack]:
    """A private Redis plus whatever the test starts; everything stops on exit, pass or fail."""
    log_dir = tmp_path / "procs"
    log_dir.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(log_dir)
    web_port = free_port()
    env = stack_env(database_url, redis, storage_root, web_port, smtp_port, **extra)
    stack = Stack(log_dir, env, redis, fast_clocks=fast_clocks, web_port=web_port)
    install_cleanup()
    try:
        redis.start()
        yield stack
    finally:
        stack.close()


class Supervisor:
    """Restarts a process that died (as systemd or Kubernetes would), until stopped."""

    def __init__(self, proc: Proc, poll: float = 0.2) -> None:
        self.proc = proc
        self.poll = poll
        self.restarts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"supervise-{proc.name}", daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:  # a kill just before the end: the process still runs afterwards
            if not self.proc.alive():
                self.proc.start()
                self.restarts += 1

    def kill(self) -> None:
        """SIGKILL the process now; the supervisor starts a fresh one."""
        with self._lock:
            self.proc.kill()

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            with self._lock:
                if not self.proc.alive() and not self._stop.is_set():
                    self.proc.start()
                    self.restarts += 1
