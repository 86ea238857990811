"""A web process for test_processes.py: ``python -m tests.ratelimit.serve PORT``, the app built from
the JSON config in ``CODEX_TEST_CONFIG``, served by werkzeug's threaded server (the fast path in
front, as in production)."""

from __future__ import annotations

import json
import os
import sys

from werkzeug.serving import make_server

from app import create_app


def main() -> None:
    app = create_app(json.loads(os.environ["CODEX_TEST_CONFIG"]))
    near = app.extensions["near_cache"]
    if near is not None:
        near.wait_usable(5.0)
    server = make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
