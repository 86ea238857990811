"""Celery entry point: ``celery -A tasks.worker worker|beat|flower``."""

from app import create_app
from tasks.schedule import beat_schedule

flask_app = create_app(role="worker")
celery = flask_app.extensions["celery"]
celery.conf.beat_schedule = beat_schedule(flask_app.extensions["codex_config"])

# Importing the task modules registers their tasks on ``celery``.
import tasks.email  # noqa: E402
import tasks.media  # noqa: E402
import tasks.payments  # noqa: E402
import tasks.playback  # noqa: E402
import tasks.storage  # noqa: E402
import tasks.system  # noqa: E402,F401
