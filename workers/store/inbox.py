"""The inbox: durable recording of accepted return events, and the read side of a return's status.

``record_event`` runs in ONE transaction: the shop, order, return and event rows become visible
together or not at all, so a 202 always means "durable and complete". The event row is its own
outbox entry: the relay (``workers.store.outbox``) finds it and rings the workers' doorbell, so
the request path never talks to Redis. ``record_events`` does the same for several events in one
statement and one commit (group commit, ``web/group_commit.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from workers.events import ReturnEvent
from workers.statuses import EventStatus, SyncState
from workers.store.db import statement, transaction


class RecordStatus(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    UNKNOWN_SHOP = "unknown_shop"


@dataclass(frozen=True)
class RecordResult:
    status: RecordStatus
    order_id: int | None = None
    event_row_id: int | None = None
    # The stored event's own status (for a duplicate: is it still open, worth a new doorbell?).
    event_status: EventStatus | None = None

    @property
    def is_open(self) -> bool:
        return self.event_status is not None and self.event_status.is_open


def _payload_json(payload: Mapping[str, Any] | list[Any]) -> str:
    # allow_nan=False: the endpoint already refuses NaN/Infinity; a slip must fail, not store junk.
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def record_event(event: ReturnEvent, payload: Mapping[str, Any]) -> RecordResult:
    """Store one validated event with the parsed body it came from (``payload``, unknown fields
    and all: what the producer sent is kept as sent).

    One statement, one round trip to Postgres: the ``record_event`` function of migration 0008
    finds the shop, answers a re-delivery (same body: duplicate; another: conflict), finds or
    creates the order and return rows, inserts the event and wakes the relay, atomically.
    Raises ``workers.store.db.DatabaseUnavailable`` when Postgres cannot be reached; nothing is
    stored then.
    """
    return record_events([(event, payload)])[0]


def record_events(batch: Sequence[tuple[ReturnEvent, Mapping[str, Any]]]) -> list[RecordResult]:
    """``record_event`` for several events in one statement, one transaction and one commit
    (migration 0012's ``record_events``); the answers in the order of ``batch``. All or nothing:
    when it raises, nothing of the batch is stored, and each event can be recorded on its own.

    Sent sorted by shop, order, return and event id, so that two concurrent batches lock the rows
    they share in the same order instead of deadlocking.
    """
    order = sorted(range(len(batch)), key=lambda i: _lock_order(batch[i][0]))
    rows = statement(
        "SELECT * FROM record_events(%s::jsonb) ORDER BY ordinal",
        (_payload_json([_batch_entry(*batch[i]) for i in order]),),
    )
    assert len(rows) == len(batch)
    results = dict(zip(order, map(_result, rows), strict=True))
    return [results[i] for i in range(len(batch))]


def _batch_entry(event: ReturnEvent, payload: Mapping[str, Any]) -> list[Any]:
    ret = event.event_return
    occurred_at = event.occurred_at.isoformat()
    return [event.id, event.shop, ret.id, ret.order.gid, ret.order.name, event.type, occurred_at, payload]


def _lock_order(event: ReturnEvent) -> tuple[str, str, str, str]:
    order = event.event_return.order
    return (event.shop, order.gid or order.name or "", event.event_return.id, event.id)


def _result(row: Mapping[str, Any]) -> RecordResult:
    return RecordResult(
        status=RecordStatus(row["status"]),
        order_id=row["order_id"],
        event_row_id=row["event_row_id"],
        event_status=EventStatus(row["event_status"]) if row["event_status"] else None,
    )


def return_status(shop_domain: str, platform_return_id: str) -> dict[str, Any] | None:
    """The body of ``GET /v1/returns/{shop}/{return id}`` (INGEST.md), or None if unknown."""
    with transaction() as cur:
        cur.execute(
            """
            SELECT r.id, r.applied_state, r.sync, r.detail, r.shopify_return_gid, r.shopify_status,
                   o.order_gid, o.order_name, o.order_ref
            FROM returns r
            JOIN shops s ON s.id = r.shop_id
            JOIN orders o ON o.id = r.order_id
            WHERE s.domain = %s AND r.platform_return_id = %s
            """,
            (shop_domain, platform_return_id),
        )
        ret = cur.fetchone()
        if ret is None:
            return None
        cur.execute(
            "SELECT event_id, type, status FROM events WHERE return_id = %s ORDER BY occurred_at, id",
            (ret["id"],),
        )
        events = cur.fetchall()
    if not events:
        return None  # INGEST.md: 404 when no event of the return was ever accepted
    sync = ret["sync"]
    # The workers write 'synced' after applying; an event accepted since then is not applied yet,
    # so the return is honestly 'pending' until a worker has looked at it.
    if sync == SyncState.SYNCED and any(e["status"] == EventStatus.ACCEPTED for e in events):
        sync = SyncState.PENDING
    return {
        "shop": shop_domain,
        "return_id": platform_return_id,
        "order": {"id": ret["order_gid"], "name": ret["order_name"]},
        "state": ret["applied_state"],
        "sync": sync,
        "detail": ret["detail"],
        "shopify": {"return_id": ret["shopify_return_gid"], "status": ret["shopify_status"]},
        "events": [{"id": e["event_id"], "type": e["type"], "status": e["status"]} for e in events],
    }
