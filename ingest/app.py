"""The ingest HTTP service (served as ``ingest.wsgi:application``, see ingest/gunicorn_conf.py).

``POST /v1/return-events`` follows INGEST.md exactly. The order of checks is part of the contract
and of its security: nothing about the body is looked at before its signature is verified (only
its type and size, which cost nothing), and nothing is stored before it validates.

Rules kept everywhere here:
- never a 2xx before the event is committed; never a 5xx other than 503 for any input;
- never log a body, a header value or a secret: only event ids, shop domains and exception types.
"""

from __future__ import annotations

import hmac
import json
import logging
import traceback
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from config import get_settings
from ingest.openapi import build_spec
from ingest.signatures import SIGNATURE_HEADERS, SignatureError, Verifier
from workers.events import InvalidEvent, ReturnEvent, load_event
from workers.store import db, inbox
from workers.store.db import DatabaseUnavailable
from workers.store.inbox import RecordStatus

# Rings the workers' doorbell for an order row; False when the broker could not be reached.
Enqueue = Callable[[int], bool]

log = logging.getLogger("ingest")

# Deeper than any real event (5 levels) by far; stops stack-hungry bodies before json.dumps/Postgres.
MAX_JSON_DEPTH = 64
_READ_CHUNK = 64 * 1024


class BadBody(Exception):
    """The body is not a JSON object we can store; the message is safe to return."""


def _reject_constant(name: str) -> float:
    raise BadBody(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadBody("a number is too large")
    return value


def _check_storable(value: Any) -> None:
    """Refuse what jsonb cannot hold faithfully: NUL characters, lone surrogates, absurd nesting."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadBody(f"the body is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _check_text(item)


def _check_text(text: str) -> None:
    if "\x00" in text:
        raise BadBody("strings must not contain NUL (\\u0000)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadBody("strings must not contain unpaired surrogates") from None


def parse_body(raw: bytes) -> dict[str, Any]:
    """Strict JSON → dict, or BadBody. UTF-8 only, no NaN/Infinity, no non-finite numbers."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadBody("the body is not valid UTF-8") from None
    try:
        parsed = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise BadBody(f"the body is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError as exc:  # JSONDecodeError, and int() of a >4300-digit integer
        raise BadBody(f"the body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(parsed, dict):
        raise BadBody("the body must be a JSON object")
    _check_storable(parsed)
    return parsed


def _error(status: int, message: str, **headers: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers)
    return response


def _unavailable(message: str = "the event cannot be stored durably right now; retry later") -> Response:
    return _error(503, message, **{"Retry-After": str(get_settings().ingest_retry_after_s)})


def _read_limited(limit: int) -> bytes | None:
    """The body, or None when it is over ``limit``; never reads more than ``limit + 1`` bytes."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    stream = request.stream  # chunked bodies (no Content-Length) arrive here too under gunicorn
    chunks: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(min(_READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return None if total > limit else b"".join(chunks)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    mimetype, _, params = content_type.partition(";")
    if mimetype.strip().lower() != "application/json":
        return False
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False  # we only decode UTF-8 (RFC 8259); another charset would be misread
    return True


def _ring_doorbell_after(response: Response, order_id: int) -> Response:
    """Ring the doorbell once the answer has been sent (the event is already committed).

    The publish to Redis (plus its enqueued_at mark) costs more than the whole ingest, and the
    producer does not need to wait for it: a lost doorbell only delays the work until the sweep.
    ``call_on_close`` runs it after gunicorn wrote the response, on the same worker thread.
    """
    enqueue: Enqueue = current_app.config["RETURNSYNC_ENQUEUE"]

    def ring() -> None:
        try:
            # enqueue_order marks the events' enqueued_at itself once the message is out.
            enqueue(order_id)
        except Exception as exc:  # noqa: BLE001 - the sweep heals a lost doorbell
            log.warning("doorbell for order %s not rung: %s", order_id, type(exc).__name__)

    response.call_on_close(ring)
    return response


def _record_with_one_retry(event: ReturnEvent, body: dict[str, Any]) -> inbox.RecordResult:
    """Pooled connections die when Postgres restarts; the first use finds out and is discarded.
    One retry on a fresh connection hides that from the producer. It is safe even if the failure
    hit the COMMIT itself: the retry then finds the stored event and answers a duplicate."""
    try:
        return inbox.record_event(event, body)
    except DatabaseUnavailable:
        return inbox.record_event(event, body)


def receive_event() -> Response:
    settings = get_settings()
    verifier: Verifier = current_app.config["RETURNSYNC_VERIFIER"]

    if not _is_json(request.headers.get("Content-Type")):
        return _error(415, "Content-Type must be application/json")
    raw = _read_limited(settings.ingest_max_body_bytes)
    if raw is None:
        return _error(413, f"the body is over {settings.ingest_max_body_bytes} bytes")
    try:
        header_id = verifier.verify(raw, {name: request.headers.get(name, "") for name in SIGNATURE_HEADERS})
    except SignatureError as exc:
        return _error(401, str(exc))
    try:
        body = parse_body(raw)
    except BadBody as exc:
        return _error(400, str(exc))
    # A missing or non-string id is a field error (422 below); a different one means the signed
    # headers were made for another event.
    if isinstance(body.get("id"), str) and body["id"] != header_id:
        return _error(401, "the webhook-id header does not match the body's id")

    try:
        event = load_event(body)
    except InvalidEvent as exc:
        return _json({"errors": exc.errors}, 422)
    try:
        result = _record_with_one_retry(event, body)
    except DatabaseUnavailable as exc:
        log.warning("event %s not stored, database unavailable: %s", event.id, type(exc).__name__)
        return _unavailable()

    if result.status is RecordStatus.UNKNOWN_SHOP:
        return _json({"errors": {"shop": ["unknown shop"]}}, 422)
    if result.status is RecordStatus.CONFLICT:
        return _error(409, f"event {event.id} was already stored with different content")
    if result.status is RecordStatus.ACCEPTED and result.order_id is not None:
        log.info("event %s accepted for %s (order row %s)", event.id, event.shop, result.order_id)
        return _ring_doorbell_after(_json({"id": event.id, "status": "accepted"}, 202), result.order_id)
    # A duplicate: the producer retried. If the event is still open, its doorbell may have been
    # lost (Redis down at the time); ringing again is cheap and the workers are idempotent.
    duplicate = _json({"id": event.id, "status": "duplicate"}, 200)
    if result.is_open and result.order_id is not None:
        return _ring_doorbell_after(duplicate, result.order_id)
    return duplicate


def _json(body: dict[str, Any], status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    return response


def _bearer_ok(header: str | None, token: str) -> bool:
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Bytes, not str: compare_digest raises TypeError on non-ASCII str, and a header can be anything.
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8"))


def return_status(shop: str, return_id: str) -> Response:
    if not _bearer_ok(request.headers.get("Authorization"), get_settings().status_api_token):
        response = _error(401, "missing or wrong bearer token")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    try:
        body = inbox.return_status(shop, return_id)
    except DatabaseUnavailable:
        return _unavailable("the status cannot be read right now; retry later")
    if body is None:
        return _error(404, "no event of this return was ever accepted")
    return _json(body, 200)


def healthz() -> Response:
    return _json({"status": "ok"}, 200)


def readyz() -> Response:
    try:
        with db.transaction() as cur:
            cur.execute("SELECT 1")
    except DatabaseUnavailable:
        return _unavailable("database unreachable")
    return _json({"status": "ready"}, 200)


def create_app(enqueue: Enqueue) -> Flask:
    """Build the app; ``enqueue`` rings the workers' doorbell (``ingest.wsgi`` passes
    ``tasks.returns.enqueue_order``; tests pass what they observe)."""
    settings = get_settings()
    app = Flask("ingest")
    app.config["RETURNSYNC_VERIFIER"] = Verifier.from_secrets(
        settings.ingest_secrets, settings.ingest_timestamp_tolerance_s
    )
    app.config["RETURNSYNC_ENQUEUE"] = enqueue
    # Keep the contract's key order in bodies ("id" before "status"); clients may diff them.
    app.json.sort_keys = False  # type: ignore[attr-defined]

    app.add_url_rule("/v1/return-events", "receive_event", receive_event, methods=["POST"])
    app.add_url_rule("/v1/returns/<shop>/<return_id>", "return_status", return_status, methods=["GET"])
    app.add_url_rule("/healthz", "healthz", healthz, methods=["GET"])
    app.add_url_rule("/readyz", "readyz", readyz, methods=["GET"])

    spec_json = build_spec().to_dict()
    app.add_url_rule("/openapi.json", "openapi", lambda: _json(spec_json, 200), methods=["GET"])

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # 404/405 and werkzeug's own 400s answer in JSON like everything else.
        response = _error(exc.code or 500, exc.description or exc.name)
        valid_methods = getattr(exc, "valid_methods", None)
        if exc.code == 405 and valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        if (exc.code or 500) >= 500:
            return _unavailable()
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # A bug must not become a 500 with a stack trace (INGEST.md: only 503 for any input, and
        # the producer retries a 503). Log where it happened, not what was in the request.
        tb = "".join(traceback.format_tb(exc.__traceback__))
        log.error("unexpected %s on %s %s\n%s", type(exc).__name__, request.method, request.path, tb)
        return _unavailable()

    return app
