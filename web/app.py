"""The web process: ``create_app()``, served by gunicorn as ``web.wsgi:application``.

It answers the returns platform (``web.ingest``, ``web.status``) and Shopify (``web.shopify_app``:
install, callback, webhooks), and on the request path talks to Postgres only: the
relay (``workers.relay``) rings the workers' doorbell for what it commits, so a slow or absent
Redis never holds a request.
"""

from __future__ import annotations

import logging
import traceback

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from config import get_settings
from web import ingest, metrics, ops, shopify_app, status
from web.openapi import build_spec
from web.responses import error, json_response, unavailable
from web.signatures import Verifier
from workers.store import db
from workers.store.db import DatabaseUnavailable

log = logging.getLogger("web")


def healthz() -> Response:
    return json_response({"status": "ok"}, 200)


def readyz() -> Response:
    try:
        with db.transaction() as cur:
            cur.execute("SELECT 1")
    except DatabaseUnavailable:
        return unavailable("database unreachable")
    return json_response({"status": "ready"}, 200)


def create_app() -> Flask:
    settings = get_settings()
    app = Flask("returnsync")
    app.config["RETURNSYNC_VERIFIER"] = Verifier.from_secrets(
        settings.ingest_secrets, settings.ingest_timestamp_tolerance_s
    )
    app.config["RETURNSYNC_RECORDER"] = ingest.recorder(settings.ingest_batch_max)
    # Keep the contract's key order in bodies ("id" before "status"); clients may diff them.
    app.json.sort_keys = False  # type: ignore[attr-defined]

    app.add_url_rule("/v1/return-events", "receive_event", ingest.receive_event, methods=["POST"])
    app.add_url_rule("/v1/returns/<shop>/<return_id>", "return_status", status.return_status, methods=["GET"])
    app.add_url_rule("/shopify/install", "shopify_install", shopify_app.install_entry, methods=["GET"])
    app.add_url_rule("/shopify/callback", "shopify_callback", shopify_app.callback, methods=["GET"])
    app.add_url_rule("/shopify/webhooks", "shopify_webhooks", shopify_app.receive_webhook, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])
    # Operators' Prometheus: its own credentials (METRICS_BASIC_AUTH), never the producer's.
    metrics.register(app)
    # Operators' pages under /ops: their own logins (OPS_USERS), a signed session, CSRF tokens.
    ops.register(app)

    spec_json = build_spec().to_dict()
    app.add_url_rule("/openapi.json", "openapi", lambda: json_response(spec_json, 200), methods=["GET"])

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # 404/405 and werkzeug's own 400s answer in JSON like everything else.
        response = error(exc.code or 500, exc.description or exc.name)
        valid_methods = getattr(exc, "valid_methods", None)
        if exc.code == 405 and valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        if (exc.code or 500) >= 500:
            return unavailable()
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # A bug must not become a 500 with a stack trace (INGEST.md: only 503 for any input, and
        # the producer retries a 503). Log where it happened, not what was in the request.
        tb = "".join(traceback.format_tb(exc.__traceback__))
        # The route's rule, never the raw path: a path is the client's text (ids, or a forged
        # log line behind a %0a).
        rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
        log.error("unexpected %s on %s %s\n%s", type(exc).__name__, request.method, rule, tb)
        return unavailable()

    return app
