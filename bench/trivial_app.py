"""The baseline for bench_http: the smallest Flask app, served with the same gunicorn settings.

``/one-redis-get`` is context, not a baseline: the same answer after one Redis ``GET`` (redis-py,
``REDIS_URL``), the floor of any request that must ask Redis once, as every rate-limited request
does (security.md §3: the limits live in Redis)."""

import os

import redis
from flask import Flask, Response, jsonify

app = Flask(__name__)
_redis = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))


@app.get("/health")
def health() -> Response:
    return jsonify({"status": "ok"})


@app.get("/one-redis-get")
def one_redis_get() -> Response:
    _redis.get("bench:trivial")
    return jsonify({"status": "ok"})
