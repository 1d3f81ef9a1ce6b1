"""The JSON answers every endpoint shares: ``{"error": ...}`` bodies and the one 503."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify

from config import get_settings


def error(status: int, message: str, **headers: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers)
    return response


def unavailable(message: str = "the event cannot be stored durably right now; retry later") -> Response:
    """The only 5xx we answer: Postgres cannot be reached; the client retries after ``Retry-After``."""
    return error(503, message, **{"Retry-After": str(get_settings().ingest_retry_after_s)})


def json_response(body: dict[str, Any], status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response
