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
import re
import time
import traceback
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from config import get_settings
from ingest.openapi import build_spec
from ingest.signatures import SIGNATURE_HEADERS, SignatureError, Verifier
from workers.events import ID_PATTERN, SHOP_PATTERN, InvalidEvent, ReturnEvent, load_event
from workers.store import db, inbox
from workers.store.db import DatabaseUnavailable
from workers.store.inbox import RecordStatus

log = logging.getLogger("ingest")

_SHOP = re.compile(SHOP_PATTERN.removeprefix("^").removesuffix("$"))
_RETURN_ID = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))

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


class SlowBody(Exception):
    """The client did not send its body within the body timeout."""


def _read_limited(limit: int, timeout_s: float) -> bytes | None:
    """The body, or None when it is over ``limit``; never reads more than ``limit + 1`` bytes, and
    raises ``SlowBody`` when it has not all arrived within ``timeout_s`` (a stalled client must not
    hold its connection forever)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    stream = request.stream  # chunked bodies (no Content-Length) arrive here too under gunicorn
    # Under gunicorn the client's socket is at hand; a deadline on it bounds every read.
    sock = request.environ.get("gunicorn.socket")
    deadline = time.monotonic() + timeout_s
    chunks: list[bytes] = []
    total = 0
    try:
        while total <= limit:
            if sock is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SlowBody
                sock.settimeout(remaining)
            chunk = stream.read(min(_READ_CHUNK, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except (TimeoutError, OSError) as exc:
        raise SlowBody from exc
    finally:
        if sock is not None:
            sock.settimeout(None)
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
    try:
        raw = _read_limited(settings.ingest_max_body_bytes, settings.ingest_body_timeout_s)
    except SlowBody:
        response = _error(408, f"the body did not arrive within {settings.ingest_body_timeout_s:g}s")
        response.headers["Connection"] = "close"
        return response
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
    if result.status is RecordStatus.ACCEPTED:
        log.info("event %s accepted for %s (order row %s)", event.id, event.shop, result.order_id)
        return _json({"id": event.id, "status": "accepted"}, 202)
    # A duplicate: the producer retried. If the event is still open, record_event re-armed its
    # doorbell (it may have been lost); the relay rings it.
    return _json({"id": event.id, "status": "duplicate"}, 200)


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
    # A segment no event can carry (a control character, a NUL Postgres would refuse) names no
    # return: 404, like any unknown one, without a query.
    if _SHOP.fullmatch(shop) is None or _RETURN_ID.fullmatch(return_id) is None:
        return _error(404, "no event of this return was ever accepted")
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


def create_app() -> Flask:
    """Build the app. It talks to Postgres only: the relay (``workers.relay``) rings the workers'
    doorbell for what it commits, so a slow or absent Redis never holds a request."""
    settings = get_settings()
    app = Flask("ingest")
    app.config["RETURNSYNC_VERIFIER"] = Verifier.from_secrets(
        settings.ingest_secrets, settings.ingest_timestamp_tolerance_s
    )
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
        # The route's rule, never the raw path: a path is the client's text (ids, or a forged
        # log line behind a %0a).
        rule = request.url_rule.rule if request.url_rule is not None else "(no route)"
        log.error("unexpected %s on %s %s\n%s", type(exc).__name__, request.method, rule, tb)
        return _unavailable()

    return app
