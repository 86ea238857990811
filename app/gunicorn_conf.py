"""gunicorn settings for the web process: ``gunicorn -c python:app.gunicorn_conf "app:create_app()" …``
(the module form works from any working directory).

Only what makes ``/metrics`` add up across the web workers, and no access log; workers, threads and the bind address
stay on the command line (Procfile). gunicorn reads this file as a file, in its master process,
before any worker imports the app (so ``app`` is not imported here).

prometheus_client runs in multiprocess mode: each worker writes its counters and histograms to
files in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape of any worker merges all of them. The directory
defaults to ``var/prometheus/web`` (relative to the working directory) and must belong to this
server alone: it is emptied of metric files whenever the server starts, since the previous run's
files would otherwise be added to the new run's counts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_directory = Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or "var/prometheus/web").resolve()
# Set before the workers import prometheus_client (it chooses per-process files on import) and
# inherited by them.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_directory)

# No access log (gunicorn's default, said here so it stays so): the app writes one JSON line per
# request itself (app/logging.py, jobs.md §10); gunicorn's line would log each request a second
# time, with token paths unmasked.
accesslog = None


def on_starting(server: Any) -> None:
    """Master, once, before any worker starts: an empty directory."""
    _directory.mkdir(parents=True, exist_ok=True)
    # Only prometheus_client's files, so a directory set by mistake to a shared one keeps the rest.
    for stale in _directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Master, after a worker exited: its counters stay in the sum, its live gauges (if any) go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(_directory))
