"""Celery entry point: ``celery -A tasks.worker worker|beat|flower``.

Task metrics: every process counts its task runs through Celery signals
(``app.metrics.connect_task_signals``). A worker started with ``CELERY_METRICS_PORT`` serves the
sum over its pool processes on that port (the Procfile's worker lines set one each). Its pool
processes write to a directory of its own, ``CELERY_METRICS_DIR`` (default
``var/prometheus/celery-<port>``), emptied here at start-up: never the web server's directory, which
gunicorn empties whenever it starts and whose file names (process ids) would collide across hosts
or containers.
"""

import os
import sys
from pathlib import Path


def _metrics_directory() -> None:
    """Choose where this process's metric values live, before ``app.metrics`` creates them."""
    port = os.environ.get("CELERY_METRICS_PORT", "")
    # Beat and Flower load this module too; only a worker runs tasks (and owns the directory).
    if not port or "worker" not in sys.argv[1:]:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    else:
        directory = Path(os.environ.get("CELERY_METRICS_DIR") or f"var/prometheus/celery-{port}").resolve()
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # the previous run's processes
            stale.unlink(missing_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # prometheus_client decides between per-process files and in-memory values when it is first
    # imported, and the celery command has imported it already (Flower's command plugin does):
    # decide again, for the metrics created from here on.
    from prometheus_client import values

    values.ValueClass = values.get_value_class()


_metrics_directory()

from celery import signals  # noqa: E402

from app import create_app  # noqa: E402
from app.metrics import connect_task_signals, serve_worker_metrics  # noqa: E402
from tasks.schedule import beat_schedule  # noqa: E402

flask_app = create_app(role="worker")
celery = flask_app.extensions["celery"]
celery.conf.beat_schedule = beat_schedule(flask_app.extensions["codex_config"])
connect_task_signals()


@signals.worker_init.connect(weak=False, dispatch_uid="codex.worker_metrics")
def _serve_metrics(**_: object) -> None:
    """In the worker's main process, before the pool starts: the metrics endpoint."""
    port = os.environ.get("CELERY_METRICS_PORT", "")
    if not port or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    config = flask_app.extensions["codex_config"]
    addr = os.environ.get("CELERY_METRICS_ADDR") or "127.0.0.1"
    serve_worker_metrics(addr, int(port), config.METRICS_TOKEN, config.APP_ENV == "production")


# Importing the task modules registers their tasks on ``celery``.
import tasks.email  # noqa: E402
import tasks.maintenance  # noqa: E402
import tasks.media  # noqa: E402
import tasks.payments  # noqa: E402
import tasks.playback  # noqa: E402
import tasks.storage  # noqa: E402
import tasks.system  # noqa: E402,F401
