"""``/health``, ``/health/ready`` and ``/metrics`` (api.md §2). Outside ``/api/v1`` and the OpenAPI doc."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask.blueprints import BlueprintSetupState

from app import db, errors, metrics
from app.jobs import QUEUES
from app.storage import get_storage
from app.system import service

bp = Blueprint("system", __name__)


HEALTH_BODY = b'{"status":"ok"}\n'  # what jsonify sends, built once: probes ask every few seconds


@bp.get("/health")
def health() -> Any:
    return current_app.response_class(HEALTH_BODY, mimetype="application/json")


@bp.record_once
def _readiness_cache(state: BlueprintSetupState) -> None:
    state.app.extensions["readiness"] = service.ReadinessCache()


@bp.get("/health/ready")
def ready() -> Any:
    # Each process answers from a result at most 1 s old (security.md §12).
    checks = current_app.extensions["readiness"].get(_check_dependencies)
    healthy = all(value == "ok" for value in checks.values())
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return jsonify(body), 200 if healthy else 503


def _check_dependencies() -> dict[str, str]:
    state = current_app.extensions["db"]
    redis_client = current_app.extensions["redis"]
    storage = get_storage()
    return service.run_checks(
        {
            "database": service.database_check(state.engine),
            "redis": redis_client.ping,
            "storage": storage.check,
        }
    )


@bp.get("/metrics")
def metrics_view() -> Any:
    token = current_app.config["METRICS_TOKEN"]
    if not token and current_app.config["APP_ENV"] == "production":
        raise errors.NotFound()
    if token:
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
            raise errors.Unauthenticated()
    # The gauges are read now, for this scrape; the counters and histograms are every web
    # worker's (app/metrics.py). A scrape must still answer when a dependency is down.
    read_now = [metrics.queue_lengths(current_app.extensions["broker_redis"], QUEUES)]
    try:
        read_now += metrics.backlog(db.session)
    except Exception as exc:
        current_app.logger.warning("metrics.gauges_unavailable: %s", type(exc).__name__)
    body, content_type = metrics.render(read_now)
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})
