"""`make stack` as a test: ``scripts/stack.sh --check`` starts the compose topology as local
processes (S3 through moto with a public host name that differs from the internal one, an SMTP
sink, a private Redis, its own database), runs the README walkthrough against it, plays the
stream with ffmpeg, waits for the receipt email, and stops everything again."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_the_stack_runs_the_walkthrough_and_plays_the_stream() -> None:
    env = {
        **os.environ,
        # The dev tools of this interpreter's environment first, as `make stack` does with .venv/bin.
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
    }
    for name in ("APP_ENV", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    ran = subprocess.run(
        [str(ROOT / "scripts" / "stack.sh"), "--check"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=420,
        check=False,
    )
    output = ran.stdout
    assert ran.returncode == 0, output[-6000:]
    assert "stack: check passed" in output
    assert "segments are presigned for the public S3 endpoint (http://localhost:" in output
    ports = dict(re.findall(r"(\w+)=(\d+)", re.search(r"stack: ports (.*)", output)[1]))  # type: ignore[index]
    assert set(ports) == {"web", "flower", "s3", "smtp", "redis"}
    # Everything was stopped again.
    assert "stack: stopped" in output
    assert not [name for name, port in ports.items() if _listening(int(port))]
