"""Media ingest overhead: a 60 s 1280x720 clip through the ingest task body vs the same ffmpeg commands by hand.

- Clip: ffmpeg ``testsrc2`` 1280x720 at 30 fps + a 440 Hz tone, 60 s, H.264/AAC; made once and cached
  as ``bench/out/ingest-1280x720-60s.mp4`` (git-ignored).
- By hand: the exact argument lists the pipeline runs (``transcode.video_commands``: one encode of the
  720p/480p/360p ladder + the thumbnail), run back to back with ``subprocess.run``.
- Task: ``app.media.ingest.run_ingest`` (what ``media.ingest`` runs) on local storage: claim (commit), copy
  the original out of storage, ffprobe, the same ffmpeg runs with progress parsing and heartbeats,
  preview, CODECS probes, output validation, upload of every output, and the success transaction.
  Needs Postgres (database ``codex_bench`` on ``DATABASE_URL``'s server, created and migrated here);
  without it the row measures ``transcode.process`` (everything but the database) and says so.
- Runs alternate (hand, task, task, hand, …) ``BENCH_INGEST_REPEAT`` times each (default 3); the best wall
  time of each is compared. CPU time (this process + ffmpeg children) is reported too: on a shared
  machine it shows the overhead without the noise of other load.

Goal: task wall time <= 1.15 x by hand.

    python -m bench.bench_ingest          # or: make bench
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from app.media import ffmpeg, transcode
from app.media.job import Heartbeat, Job, MediaSettings
from bench.common import PRODUCTION

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
CLIP = OUT / "ingest-1280x720-60s.mp4"
STORAGE = OUT / "ingest-storage"
GOAL_RATIO = 1.15


def make_clip() -> Path:
    if CLIP.exists() and CLIP.stat().st_size > 0:
        return CLIP
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = CLIP.with_suffix(".tmp.mp4")
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", "60", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "128k", "-movflags", "+faststart", str(tmp),
        ],
        check=True,
    )  # fmt: skip
    tmp.replace(CLIP)
    return CLIP


def settings() -> MediaSettings:
    return MediaSettings(
        ffmpeg=os.environ.get("FFMPEG_PATH", "ffmpeg"),
        ffprobe=os.environ.get("FFPROBE_PATH", "ffprobe"),
        x264_preset=os.environ.get("MEDIA_X264_PRESET", "veryfast"),
    )


class Stopwatch:
    """Wall and CPU seconds (this process's threads + finished children: ffmpeg, ffprobe) of a block,
    and how much of the wall time was spent inside ``ffmpeg.run`` (the pipeline's ffmpeg runner)."""

    wall = cpu = in_ffmpeg = 0.0

    @staticmethod
    def _cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def __enter__(self) -> Stopwatch:
        self._original_run = ffmpeg.run

        def run(*args: Any, **kwargs: Any) -> str:
            started = time.perf_counter()
            try:
                return self._original_run(*args, **kwargs)
            finally:
                self.in_ffmpeg += time.perf_counter() - started

        ffmpeg.run = run  # pipeline calls ffmpeg.run through the module
        self._wall, self._cpu0 = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self._wall, self._cpu() - self._cpu0
        ffmpeg.run = self._original_run


def by_hand(source: Path, media: MediaSettings) -> Stopwatch:
    probed = ffmpeg.probe(source, media.ffprobe)  # what a person would look up before typing the commands
    with tempfile.TemporaryDirectory(prefix="codex-hand-") as workdir:  # where the task works too
        commands = transcode.video_commands(media, source, Path(workdir), probed)
        with Stopwatch() as watch:
            for argv, _stage in commands:
                subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        return watch


# ---- through the task body (Postgres) -------------------------------------------------------------


def bench_database_url() -> str:
    base = os.environ.get("DATABASE_URL", "postgresql+psycopg://localhost:5432/codex")
    return make_url(base).set(database="codex_bench").render_as_string(hide_password=False)


def migrate(db_url: str) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    from app.db import ensure_database

    ensure_database(db_url)
    cfg = AlembicConfig(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["url"] = db_url
    cfg.attributes["skip_logging"] = True
    command.upgrade(cfg, "head")


class TaskRunner:
    """``run_ingest`` in an app on ``codex_bench`` with local storage; messages are recorded, not sent."""

    def __init__(self, media: MediaSettings) -> None:
        from app import create_app

        db_url = bench_database_url()
        migrate(db_url)
        self.app = create_app(
            {
                "DATABASE_URL": db_url,
                "STORAGE_BACKEND": "local",
                "STORAGE_LOCAL_ROOT": str(STORAGE),
                "LOG_LEVEL": PRODUCTION["LOG_LEVEL"],  # as production's workers log (INFO JSON lines)
                "LOG_FORMAT": PRODUCTION["LOG_FORMAT"],
                "FFMPEG_PATH": media.ffmpeg,
                "FFPROBE_PATH": media.ffprobe,
                "MEDIA_X264_PRESET": media.x264_preset,
            }
        )
        self.app.extensions["task_sender"] = lambda name, args, countdown: None
        self.media = media

    def run(self, source: Path) -> Stopwatch:
        from app import db
        from app.identity.models import User
        from app.media.ingest import run_ingest
        from app.media.models import MediaItem
        from app.orgs.models import Organization
        from app.storage import keys

        tag = uuid.uuid4().hex[:10]
        with self.app.app_context():
            session = db.session
            user = User(email=f"bench-{tag}@example.com", name="Bench")
            session.add(user)
            session.flush()
            org = Organization(name="Bench", slug=f"bench-{tag}", created_by=user.id)
            session.add(org)
            session.flush()
            media_id = uuid.uuid4()
            item = MediaItem(
                id=media_id,
                organization_id=org.id,
                created_by=user.id,
                title="Bench clip",
                media_type="video",
                mime_type="video/mp4",
                file_size_bytes=source.stat().st_size,
                status="uploaded",
                original_key=keys.original_key(org.id, media_id, "video/mp4"),
            )
            session.add(item)
            session.commit()
            storage = self.app.extensions["storage"]
            storage.put_file(item.original_key, source, "video/mp4")
            with Stopwatch() as watch:
                outcome = run_ingest(session, media_id, f"bench-{tag}", settings=self.media)
            if outcome != "ready":
                raise RuntimeError(f"ingest ended {outcome}")
            storage.delete_prefix(keys.media_prefix(org.id, media_id))
        return watch

    def close(self) -> None:
        self.app.extensions["db"].engine.dispose()


def process_only(source: Path, media: MediaSettings) -> Stopwatch:
    """Fallback without Postgres: ``transcode.process`` (download, probe, encode, validate, upload)."""
    from app.storage import keys
    from app.storage.local import LocalStorage

    storage = LocalStorage(STORAGE, "bench", "http://127.0.0.1")
    org, media_id = uuid.uuid4(), uuid.uuid4()
    job = Job(media_id, org, "video", keys.original_key(org, media_id, "video/mp4"), 1, "bench")
    storage.put_file(job.original_key, source, "video/mp4")
    try:
        with tempfile.TemporaryDirectory(dir=OUT, prefix="task-") as workdir:
            with Stopwatch() as watch:
                transcode.process(job, Path(workdir), storage, media, Heartbeat(lambda: True))
            return watch
    finally:
        storage.delete_prefix(keys.media_prefix(org, media_id))


def main() -> list[dict[str, Any]]:
    source = make_clip()
    media = settings()
    repeat = max(1, int(os.environ.get("BENCH_INGEST_REPEAT", "3")))
    runner: TaskRunner | None
    try:
        runner = TaskRunner(media)
        label = "media.ingest task body (run_ingest: claim, probe, encode, validate, upload, commit)"
    except Exception as exc:  # no Postgres: measure everything but the database
        print(f"bench_ingest: no database ({type(exc).__name__}); timing transcode.process instead")
        runner = None
        label = "transcode.process (probe, encode, validate, upload; no database)"

    def hand_run() -> Stopwatch:
        return by_hand(source, media)

    def task_run() -> Stopwatch:
        return runner.run(source) if runner else process_only(source, media)

    hand: list[Stopwatch] = []
    task: list[Stopwatch] = []
    try:
        for round_no in range(repeat):
            # ABBA order, so a slow patch of a shared machine does not favour one side.
            order = [(hand, hand_run), (task, task_run)]
            for results, run in order if round_no % 2 == 0 else order[::-1]:
                results.append(run())
    finally:
        if runner:
            runner.close()
        shutil.rmtree(STORAGE, ignore_errors=True)
    best_hand, best_task = min(w.wall for w in hand), min(w.wall for w in task)
    outside = min(w.wall - w.in_ffmpeg for w in task)
    cpu_hand, cpu_task = min(w.cpu for w in hand), min(w.cpu for w in task)
    ratio, cpu_ratio = best_task / best_hand, cpu_task / cpu_hand
    clip = "60 s 1280x720 30 fps clip -> 720p/480p/360p + thumbnail"
    return [
        {
            "name": f"ffmpeg commands by hand ({clip}, preset {media.x264_preset}), wall",
            "value": round(best_hand, 2),
            "unit": "s",
            "baseline": "",
            "ratio": 1.0,
            "goal": "baseline",
        },
        {
            "name": label + ", wall",
            "value": round(best_task, 2),
            "unit": "s",
            "baseline": round(best_hand, 2),
            "ratio": round(ratio, 3),
            "goal": f"<= {GOAL_RATIO} ({'met' if ratio <= GOAL_RATIO else 'NOT met'})",
        },
        {
            "name": "same, CPU (user + system, incl. ffmpeg): insensitive to other load on the machine",
            "value": round(cpu_task, 2),
            "unit": "CPU s",
            "baseline": round(cpu_hand, 2),
            "ratio": round(cpu_ratio, 3),
            "goal": "report",
        },
        {
            "name": "task time outside ffmpeg (download, probes, preview, validation, upload, database)",
            "value": round(outside, 2),
            "unit": "s",
            "baseline": "",
            "ratio": round(outside / best_task, 3),
            "goal": "report (ratio = share of the task wall time)",
        },
        {
            "name": f"every run, wall hand / task ({repeat} each, best taken)",
            "value": " ".join(f"{h.wall:.2f}/{t.wall:.2f}" for h, t in zip(hand, task, strict=True)),
            "unit": "s",
            "baseline": "",
            "ratio": "",
            "goal": "report",
        },
    ]


if __name__ == "__main__":
    for row in main():
        print(row)
