"""Fixtures of the media tests: clips generated once per run with ffmpeg's lavfi test sources.

Clips are a few seconds long so the whole module stays well under a minute. ``media_env`` pushes
the default app (local storage under ``storage_root``) over the rolled-back ``db_session`` and
records the after-commit messages instead of publishing them.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from app.media.job import MediaSettings
from app.media.models import MediaItem
from app.storage.base import Storage

Sent = list[tuple[str, tuple[Any, ...], float | None]]

FTYP_GARBAGE = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes((i * 7919 + 13) % 251 for i in range(6000))


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True)


class Clips:
    """Test media made on first use and cached for the run."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._made: dict[str, Path] = {}

    def _get(self, name: str, make: Callable[[Path], None]) -> Path:
        if name not in self._made:
            path = self.folder / name
            make(path)
            self._made[name] = path
        return self._made[name]

    def video(self, width: int = 640, height: int = 360, seconds: float = 3.5, *, audio: bool = True) -> Path:
        """H.264/AAC MP4 of ``testsrc2`` + a 440 Hz ``sine``."""

        def make(path: Path) -> None:
            inputs = ["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=25"]
            if audio:
                inputs += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
            codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
            codecs += ["-c:a", "aac"] if audio else ["-an"]
            _ffmpeg(*inputs, "-t", str(seconds), *codecs, str(path))

        return self._get(f"video-{width}x{height}-{seconds}-{'av' if audio else 'v'}.mp4", make)

    def faststart(self) -> Path:
        """The 640x360 clip with its index (``moov``) first, as phones and editors usually write it:
        ffmpeg can then read it as the segment of an HLS playlist."""

        def make(path: Path) -> None:
            _ffmpeg("-i", str(self.video(640, 360)), "-c", "copy", "-movflags", "+faststart", str(path))

        return self._get("faststart.mp4", make)

    def rotated(self) -> Path:
        """A 1280x720 clip stored with a 90° display matrix: a 720x1280 portrait video when shown."""

        def make(path: Path) -> None:
            _ffmpeg("-i", str(self.video(1280, 720)), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(path))

        return self._get("rotated.mp4", make)

    def tone(self, seconds: float = 3.5) -> Path:
        def make(path: Path) -> None:
            _ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "libmp3lame", str(path))

        return self._get(f"tone-{seconds}.mp3", make)

    def tone_mp4(self, seconds: float = 3.5) -> Path:
        """AAC audio only, in an MP4 container (passes the ``ftyp`` magic check, has no video)."""

        def make(path: Path) -> None:
            _ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:a", "aac", str(path))

        return self._get(f"tone-{seconds}.m4a", make)

    def garbage(self) -> Path:
        """Passes an ``ftyp`` magic-bytes check, but is not a decodable file."""

        def make(path: Path) -> None:
            path.write_bytes(FTYP_GARBAGE)

        return self._get("garbage.mp4", make)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    return Clips(tmp_path_factory.mktemp("clips"))


@dataclass
class MediaEnv:
    app: Flask
    session: Session
    storage: Storage
    settings: MediaSettings
    sent: Sent = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for name, _, _ in self.sent]

    def put_original(self, media: MediaItem, clip: Path) -> None:
        self.storage.put_file(media.original_key, clip, media.mime_type)

    def as_other_actor(self, statement: Any) -> None:
        """Run ``statement`` in a session of its own and commit it (another request or worker)."""
        with self.app.extensions["db"].sessionmaker() as other:
            other.execute(statement)
            other.commit()

    def refresh(self, media: MediaItem) -> MediaItem:
        self.session.expire_all()
        row = self.session.get(MediaItem, media.id)
        assert row is not None
        return row


@pytest.fixture()
def media_env(app: Flask, db_session: Session, sent_tasks: Sent) -> Iterator[MediaEnv]:
    # heartbeat_interval=0: every progress block beats, so the heartbeat path runs in every test.
    settings = MediaSettings.from_config(app.config, heartbeat_interval=0.0)
    with app.app_context():
        yield MediaEnv(app, db_session, app.extensions["storage"], settings, sent_tasks)
