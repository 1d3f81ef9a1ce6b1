"""A bare endpoint on the same server stack, for benchmark 1: ``gunicorn 'web.bare:create_app()'``.

It reads the body and answers 202 like the real endpoint, doing nothing else, so the ratio of the
two measures what signature checking, validation and the Postgres commit cost.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request


def create_app() -> Flask:
    app = Flask("ingest_bare")

    @app.post("/v1/return-events")
    def receive() -> tuple[Response, int]:
        request.get_data()
        return jsonify(id=request.headers.get("webhook-id", ""), status="accepted"), 202

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    return app
