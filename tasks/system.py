"""``system.ping``: proves broker -> worker -> Postgres end to end."""

from __future__ import annotations

import socket
import uuid

from celery import shared_task

from app import db
from app.system.service import record_pong


@shared_task(name="system.ping", acks_late=True, reject_on_worker_lost=True, soft_time_limit=30, time_limit=45)
def ping(ping_id: str) -> bool:
    session = db.session
    done = record_pong(session, uuid.UUID(ping_id), socket.gethostname())
    session.commit()
    return done
