"""Multipart upload throughput (api.md §6.1): ``flask codex upload``'s client through gunicorn vs a plain copy.

- File: ``BENCH_UPLOAD_MIB`` MiB (default 256; an MP4 ``ftyp`` box, then random bytes, so the MP4
  size limit (5 GiB) applies, not audio's 500 MB), made once as ``bench/out/upload-<n>MiB.mp4``.
  ``BENCH_UPLOAD_MIB=1024`` measures a lesson-sized file: the fixed costs (create, sign, complete,
  about 35 ms) then weigh a quarter as much; its ratio came out lower here, not higher (bench/README.md).
- Local: the app under gunicorn (2 workers x 4 threads, as the Procfile) with local storage under
  ``bench/out/upload-storage``; the client is ``app.upload_client.Upload`` (what ``flask codex upload``
  runs): create with ``upload_mode=multipart``, sign the parts, PUT the 16 MiB parts ``BENCH_UPLOAD_PARALLEL``
  (4, the CLI's default) at a time over keep-alive HTTP (each body sent with ``socket.sendfile`` from
  the file), upload-complete (assembly + size/magic/ETag checks). The server reads each body from
  gunicorn's socket into one 1 MiB buffer (``app.speed.gunicorn_body``: the bytes gunicorn read ahead,
  then ``recv_into``), ``pwrite``s it at the part's offset and starts its writeback at once
  (``sync_file_range``).
- Durability decides the fair baseline. A part is answered 200 only once it is on disk
  (``fdatasync`` of the data, fsync of the part's record and its directory), as S3 acknowledges an
  UploadPart, and completion fsyncs the rename: an acknowledged upload survives a crash. So the
  goal compares it with a **durable copy** of the same bytes to the same disk: ``shutil.copyfile``
  (``sendfile(2)`` in the kernel), ``fsync`` of the copy and of its directory. The **page-cache
  copy** (``shutil.copyfile`` alone, nothing synced) is reported as context: no upload that
  promises durability can be compared with it fairly, and it is the floor no HTTP path reaches
  (it moves the bytes once, inside the kernel; an HTTP upload moves them through a socket and
  through Python).
- Server CPU (median, the gunicorn workers' user + system seconds per run, from ``/proc``) is
  reported for the upload and the sink: the figure other load on a shared machine inflates least
  (on a VM, stolen time still shows in it).
- One unmeasured upload and one sink run first: each worker's first requests pay one-off costs
  (lazy imports, the first database and Redis connections) that are no part of the throughput.
- Then runs alternate (page-cache copy, durable copy, upload, sink; then the reverse order)
  ``BENCH_UPLOAD_REPEAT`` times each (default 5: a run takes about 20 s, and with 3 the median of a
  shared machine moved by several hundredths between runs); best and median wall times are compared.
- Ceiling (context): the same parts sent the same way, 4 at a time, to a bare WSGI function under
  the same gunicorn (``sink_app`` below: reads the body as the route does, 1 MiB at a time, and
  writes it to a file, nothing synced), i.e. what any HTTP upload through gunicorn can reach here.
- S3 (context, not a goal): the same client against the app on moto's S3 server in this process
  (presigned UploadPart URLs; moto keeps the parts in memory and is not a fast server).

Needs Postgres (database ``codex_bench`` on ``DATABASE_URL``'s server, migrated here, or the one
``BENCH_UPLOAD_DATABASE`` names) and Redis (DBs 12/13 of ``REDIS_URL``'s server).
Goal: upload throughput >= 0.7 x the durable copy.

    python -m bench.bench_upload          # or: make bench
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from bench.common import (
    GUNICORN_CONF,
    Server,
    base_env,
    cpu_seconds,
    free_port,
    process_tree,
    production_env,
    start_gunicorn,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
SIZE_MIB = int(os.environ.get("BENCH_UPLOAD_MIB", "256"))
FILE = OUT / f"upload-{SIZE_MIB}MiB.mp4"
SIZE = SIZE_MIB * 1024 * 1024
STORAGE = OUT / "upload-storage"
GOAL_RATIO = 0.7
#: An MP4's first box (what upload-complete's magic check reads); random bytes follow.
FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
MIB = 1024 * 1024
DATABASE = os.environ.get("BENCH_UPLOAD_DATABASE", "codex_bench")


def make_file() -> Path:
    if FILE.exists() and FILE.stat().st_size == SIZE:
        return FILE
    OUT.mkdir(parents=True, exist_ok=True)
    with FILE.open("wb") as out:
        out.write(FTYP)
        left = SIZE - len(FTYP)
        while left:
            chunk = os.urandom(min(left, 8 * MIB))
            out.write(chunk)
            left -= len(chunk)
    return FILE


def bench_env(port: int, **extra: str) -> dict[str, str]:
    """Codex as production runs it (limits on, INFO JSON logs), on local storage under bench/out."""
    return production_env(
        {
            **base_env(DATABASE, 13, 12),
            "STORAGE_BACKEND": "local",
            "STORAGE_LOCAL_ROOT": str(STORAGE),
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            **extra,
        }
    )


def prepare(db_url: str) -> tuple[str, str]:
    """Migrate ``codex_bench``; a fresh user owning a fresh org, with a session. Returns (org id, token)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from app.db import ensure_database
    from app.identity.models import AuthSession, User
    from app.identity.sessions import new_token
    from app.orgs.models import Membership, Organization, OrgSettings

    ensure_database(db_url)
    cfg = AlembicConfig(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["url"] = db_url
    cfg.attributes["skip_logging"] = True
    command.upgrade(cfg, "head")
    engine = create_engine(db_url)
    now = datetime.now(UTC)
    suffix = uuid.uuid4().hex[:8]
    try:
        with Session(engine) as session, session.begin():
            user = User(email=f"bench-upload-{suffix}@example.com", name="Bench Upload", email_verified_at=now)
            session.add(user)
            session.flush()
            org = Organization(name=f"Bench upload {suffix}", slug=f"bench-upload-{suffix}", created_by=user.id)
            session.add(org)
            session.flush()
            session.add(OrgSettings(organization_id=org.id, platform_name=org.name, support_email=user.email))
            session.add(Membership(organization_id=org.id, user_id=user.id, role="owner"))
            token, token_hash = new_token()
            session.add(
                AuthSession(
                    user_id=user.id, token_hash=token_hash, expires_at=now + timedelta(hours=2), last_seen_at=now
                )
            )
            org_id = str(org.id)
    finally:
        engine.dispose()
    return org_id, token


def sink_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """WSGI: write the request body to a file of its own under ``STORAGE`` (the HTTP ceiling), read
    as the upload route reads it (``app.speed.gunicorn_body``: gunicorn's socket into one buffer)."""
    from app.speed.gunicorn_body import socket_body

    stream = socket_body(environ)
    if stream is None:
        raise RuntimeError("the sink runs under gunicorn 27, as the app")
    target = STORAGE / f"sink-{uuid.uuid4().hex}.bin"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
    buffer = bytearray(MIB)
    view = memoryview(buffer)
    written = 0
    try:
        while count := stream.readinto(buffer):
            os.pwrite(fd, view[:count], written)
            written += count
    finally:
        os.close(fd)
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]


def sink_once(base_url: str, parallel: int) -> float:
    from concurrent.futures import ThreadPoolExecutor

    from app.upload_client import FileRange, Http

    http = Http()
    part = 16 * MIB

    def put(number: int) -> None:
        body = FileRange(FILE, number * part, part)
        reply = http.request("PUT", f"{base_url}/sink", headers={}, file=body)
        assert reply.status == 200, reply.status

    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(put, range(SIZE // part)))
    elapsed = time.perf_counter() - started
    for path in STORAGE.glob("sink-*.bin"):
        path.unlink()
    return elapsed


def upload_once(base_url: str, org_id: str, token: str, parallel: int) -> float:
    from app.upload_client import Api, Progress, Upload

    class Quiet(Progress):
        def _draw(self, now: float) -> None:
            pass

        def finish(self) -> None:
            pass

    state_dir = OUT / "upload-state"
    shutil.rmtree(state_dir, ignore_errors=True)
    started = time.perf_counter()
    Upload(Api(base_url, token), FILE, org_id, "bench", parallel=parallel, state_dir=state_dir, progress=Quiet).run()
    return time.perf_counter() - started


def copy_once(*, durable: bool) -> float:
    """``shutil.copyfile`` to the storage disk; ``durable``: then fsync the copy and its directory."""
    target = STORAGE / "plain-copy.bin"
    started = time.perf_counter()
    shutil.copyfile(FILE, target)
    if durable:
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fd = os.open(STORAGE, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def server_cpu(server: Server) -> float:
    """CPU seconds (user + system) the server's worker processes have used so far (Linux ``/proc``)."""
    master = server.proc.pid
    return cpu_seconds([pid for pid in process_tree(master) if pid != master])


def clear_storage() -> None:
    shutil.rmtree(STORAGE / "orgs", ignore_errors=True)
    shutil.rmtree(STORAGE / ".multipart", ignore_errors=True)


def main() -> list[dict[str, Any]]:
    repeat = int(os.environ.get("BENCH_UPLOAD_REPEAT", "5"))
    parallel = int(os.environ.get("BENCH_UPLOAD_PARALLEL", "4"))
    make_file()
    shutil.rmtree(STORAGE, ignore_errors=True)
    STORAGE.mkdir(parents=True)
    port = free_port()
    env = bench_env(port)
    org_id, token = prepare(env["DATABASE_URL"])
    copies: list[float] = []
    durable: list[float] = []
    uploads: list[float] = []
    sinks: list[float] = []
    upload_cpu: list[float] = []  # the gunicorn workers' CPU seconds per run: what other load does not inflate
    sink_cpu: list[float] = []
    sink_port = free_port()
    with (
        start_gunicorn(
            "app:create_app()", env=env, port=port, ready_path="/health/ready", config=GUNICORN_CONF
        ) as server,
        start_gunicorn("bench.bench_upload:sink_app", env=env, port=sink_port, ready_path="/") as sink,
    ):
        # Unmeasured: each worker's first requests pay one-off costs (lazy imports, the first
        # database and Redis connections) that are no part of an upload's throughput.
        upload_once(server.url, org_id, token, parallel)
        clear_storage()
        sink_once(sink.url, parallel)
        for index in range(repeat):
            kinds = ("copy", "durable", "upload", "sink")
            for kind in kinds if index % 2 == 0 else kinds[::-1]:
                if kind == "copy":
                    copies.append(copy_once(durable=False))
                elif kind == "durable":
                    durable.append(copy_once(durable=True))
                elif kind == "sink":
                    before = server_cpu(sink)
                    sinks.append(sink_once(sink.url, parallel))
                    sink_cpu.append(server_cpu(sink) - before)
                else:
                    before = server_cpu(server)
                    uploads.append(upload_once(server.url, org_id, token, parallel))
                    upload_cpu.append(server_cpu(server) - before)
                    clear_storage()
    rows = [
        _row("durable copy (copyfile + fsync)", durable),
        _row(f"multipart upload, local, durable ({parallel} parallel)", uploads),
        _row("context: page-cache copy (copyfile, no fsync)", copies),
    ]
    rows[0]["vs durable copy (best / median)"] = "1.00x"
    rows[1]["vs durable copy (best / median)"] = (
        f"{_ratio(durable, uploads)} (goal >= {GOAL_RATIO}x); vs page-cache copy {_ratio(copies, uploads)}"
    )
    rows[2]["vs durable copy (best / median)"] = _ratio(durable, copies)
    rows[1]["server CPU s (median)"] = f"{statistics.median(upload_cpu):.2f}"
    ceiling = _row(f"ceiling: bare WSGI body sink under gunicorn, no fsync ({parallel} parallel)", sinks)
    ceiling["vs durable copy (best / median)"] = (
        f"{_ratio(durable, sinks)}; upload vs ceiling {min(sinks) / min(uploads):.2f}x (best)"
    )
    ceiling["server CPU s (median)"] = f"{statistics.median(sink_cpu):.2f}"
    rows.append(ceiling)
    s3 = s3_context(org_id, token, parallel)
    if s3 is not None:
        rows.append(s3)
    shutil.rmtree(STORAGE, ignore_errors=True)
    return rows


def s3_context(org_id: str, token: str, parallel: int) -> dict[str, Any] | None:
    """One or two uploads to the app on moto's S3 server (context only)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        return None
    from app.storage.s3 import S3Storage

    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    try:
        s3 = {
            "STORAGE_BACKEND": "s3",
            "S3_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
            "S3_BUCKET": "codex-bench-upload",
            "S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        S3Storage.from_config(s3).ensure_bucket()
        port = free_port()
        times = []
        with start_gunicorn(
            "app:create_app()", env=bench_env(port, **s3), port=port, ready_path="/health/ready", config=GUNICORN_CONF
        ) as server:
            for _ in range(2):
                times.append(upload_once(server.url, org_id, token, parallel))
        row = _row(f"multipart upload, moto S3 ({parallel} parallel)", times)
        row["vs durable copy (best / median)"] = "context"
        return row
    finally:
        moto.stop()


def _ratio(baseline: list[float], times: list[float]) -> str:
    """Throughput of ``times`` relative to ``baseline`` (best / median)."""
    best = min(baseline) / min(times)
    median = statistics.median(baseline) / statistics.median(times)
    return f"{best:.2f}x / {median:.2f}x"


def _row(name: str, times: list[float]) -> dict[str, Any]:
    best, median = min(times), statistics.median(times)
    return {
        "run": name,
        "n": len(times),
        "best s": f"{best:.2f}",
        "median s": f"{median:.2f}",
        "MiB/s (best)": f"{SIZE / MIB / best:.0f}",
        "MiB/s (median)": f"{SIZE / MIB / median:.0f}",
    }


if __name__ == "__main__":
    for line in main():
        print(line)
