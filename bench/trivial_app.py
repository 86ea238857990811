"""The baseline for bench_http: the smallest Flask app, served with the same gunicorn settings."""

from flask import Flask, Response, jsonify

app = Flask(__name__)


@app.get("/health")
def health() -> Response:
    return jsonify({"status": "ok"})
