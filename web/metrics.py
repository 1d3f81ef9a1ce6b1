"""GET /metrics: the Prometheus series of every process of this machine and the backlog in Postgres.

The web process is the exporter: its answer adds up the files of all processes writing to
``PROMETHEUS_MULTIPROC_DIR`` (its own gunicorn workers, the Celery workers and beat of the same
machine) and reads the backlog from Postgres (``workers.metrics.build_registry``). It answers only
with ``METRICS_BASIC_AUTH``: the series name every shop and how far behind it is. Prometheus::

    scrape_configs:
      - job_name: returnsync
        basic_auth: {username: prometheus, password_file: /etc/prometheus/returnsync.password}
        static_configs: [{targets: ["returnsync-web:8000"]}]
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from config import get_settings
from web.responses import error
from workers import metrics

REALM = 'Basic realm="returnsync metrics", charset="UTF-8"'


def _same(given: str | None, expected: str) -> bool:
    return hmac.compare_digest((given or "").encode(), expected.encode())


def register(app: Flask) -> None:
    """Add GET /metrics to the app."""
    registry = metrics.build_registry()
    user, _, password = get_settings().metrics_basic_auth.partition(":")

    def serve_metrics() -> Response:
        auth = request.authorization
        # Both compared whatever the first gives, so the time taken tells nothing of either.
        user_ok = _same(auth.username if auth else None, user)
        password_ok = _same(auth.password if auth else None, password)
        if auth is None or auth.type != "basic" or not (user_ok and password_ok) or not password:
            return error(401, "credentials required", **{"WWW-Authenticate": REALM})
        return Response(generate_latest(registry), 200, content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", serve_metrics, methods=["GET"])
