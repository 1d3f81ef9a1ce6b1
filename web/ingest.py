"""``POST /v1/return-events``, exactly as INGEST.md says.

The order of checks is part of the contract and of its security: nothing about the body is looked
at before its signature is verified (only its type and size, which cost nothing), and nothing is
stored before it validates. Never a 2xx before the event is committed; never a 5xx other than 503
for any input; never a body, a header value or a secret in a log line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from flask import Response, current_app, request

from config import get_settings, logcontext
from web.body import BadBody, SlowBody, is_json, parse_body, read_limited
from web.group_commit import GroupCommit, WriteInterrupted
from web.responses import error, json_response, unavailable
from web.signatures import SIGNATURE_HEADERS, SignatureError, Verifier
from workers import metrics
from workers.events import InvalidEvent, ReturnEvent, load_event
from workers.store import inbox
from workers.store.db import DatabaseUnavailable
from workers.store.inbox import RecordStatus

log = logging.getLogger("ingest")
accepted_log = logging.getLogger("ingest.accepted")


def slow_body(timeout_s: float) -> Response:
    response = error(408, f"the body did not arrive within {timeout_s:g}s")
    response.headers["Connection"] = "close"
    return response


Recorded = tuple[ReturnEvent, dict[str, Any]]
# The event may or may not be stored: retried once, then a 503 (the producer retries; a stored
# event is then answered as a duplicate).
_OUTCOME_UNKNOWN = (*DatabaseUnavailable, WriteInterrupted)


def _record_batch(items: Sequence[Recorded]) -> list[inbox.RecordResult]:
    results = inbox.record_events(items)
    metrics.ingest_batch(len(items))
    return results


def _record_one(item: Recorded) -> inbox.RecordResult:
    result = inbox.record_event(*item)
    metrics.ingest_batch(1)
    return result


def recorder(max_batch: int) -> GroupCommit[Recorded, inbox.RecordResult]:
    """A process' group commit of events: concurrent requests share a statement and a commit."""
    return GroupCommit(_record_batch, _record_one, max_batch)


def _record_with_one_retry(event: ReturnEvent, body: dict[str, Any]) -> inbox.RecordResult:
    """Pooled connections die when Postgres restarts; the first use finds out and is discarded.
    One retry on a fresh connection hides that from the producer. It is safe even if the failure
    hit the COMMIT itself: the retry then finds the stored event and answers a duplicate."""
    grouped: GroupCommit[Recorded, inbox.RecordResult] = current_app.config["RETURNSYNC_RECORDER"]
    try:
        return grouped.submit((event, body))
    except _OUTCOME_UNKNOWN:
        return grouped.submit((event, body))


def receive_event() -> Response:
    settings = get_settings()
    verifier: Verifier = current_app.config["RETURNSYNC_VERIFIER"]

    if not is_json(request.headers.get("Content-Type")):
        return error(415, "Content-Type must be application/json")
    try:
        raw = read_limited(settings.ingest_max_body_bytes, settings.ingest_body_timeout_s)
    except SlowBody:
        return slow_body(settings.ingest_body_timeout_s)
    if raw is None:
        return error(413, f"the body is over {settings.ingest_max_body_bytes} bytes")
    try:
        header_id = verifier.verify(raw, {name: request.headers.get(name, "") for name in SIGNATURE_HEADERS})
    except SignatureError as exc:
        return error(401, str(exc))
    try:
        body = parse_body(raw)
    except BadBody as exc:
        return error(400, str(exc))
    # A missing or non-string id is a field error (422 below); a different one means the signed
    # headers were made for another event.
    if isinstance(body.get("id"), str) and body["id"] != header_id:
        return error(401, "the webhook-id header does not match the body's id")

    try:
        event = load_event(body)
    except InvalidEvent as exc:
        return json_response({"errors": exc.errors}, 422)
    with logcontext.bind(event_id=event.id, shop=event.shop):
        return _store(event, body)


def _store(event: ReturnEvent, body: dict[str, Any]) -> Response:
    try:
        result = _record_with_one_retry(event, body)
    except _OUTCOME_UNKNOWN as exc:
        log.warning("event %s not stored, database unavailable: %s", event.id, type(exc).__name__)
        return unavailable()

    if result.status is RecordStatus.UNKNOWN_SHOP:
        return json_response({"errors": {"shop": ["unknown shop"]}}, 422)
    if result.status is RecordStatus.CONFLICT:
        return error(409, f"event {event.id} was already stored with different content")
    if result.status is RecordStatus.ACCEPTED:
        metrics.event_accepted(event.shop, event.type)
        # A per-message logger (config/logging.py): shown locally, quiet in production, where the
        # event row, the status API and the accepted counter say it already.
        accepted_log.info("event %s accepted for %s (order row %s)", event.id, event.shop, result.order_id)
        return json_response({"id": event.id, "status": "accepted"}, 202)
    # A duplicate: the producer retried. If the event is still open, record_event re-armed its
    # doorbell (it may have been lost); the relay rings it.
    return json_response({"id": event.id, "status": "duplicate"}, 200)
