"""The inbox: durable recording of accepted return events, and the read side of a return's status.

``record_event`` runs in ONE transaction: the shop, order, return and event rows become visible
together or not at all, so a 202 always means "durable and complete". It also wakes the relay
(``workers.store.outbox``), which rings the workers' doorbell: the request path never talks to
Redis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg2.extras

from workers.events import ReturnEvent
from workers.statuses import EventStatus, SyncState
from workers.store import outbox
from workers.store.db import transaction


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


class _LostInsertRace(Exception):
    """Another request stored the same event id between our check and our insert."""

    def __init__(self, result: RecordResult) -> None:
        super().__init__(result.status)
        self.result = result


def _payload_json(payload: Mapping[str, Any]) -> str:
    # allow_nan=False: the endpoint already refuses NaN/Infinity; a slip must fail, not store junk.
    return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _compare_existing(
    cur: psycopg2.extras.RealDictCursor, event_id: str, payload_json: str
) -> RecordResult | None:
    # Compared as jsonb in Postgres, i.e. as parsed JSON: key order, whitespace and 1 vs 1.0 do
    # not matter, exactly as stored values are compared, whatever Python would make of them.
    # A body redacted since (customers/redact) is compared by the digest of what was received.
    cur.execute(
        """
        SELECT id, order_id, status,
            CASE WHEN redacted_at IS NULL THEN payload = %s::jsonb
                 ELSE payload_digest = encode(sha256(convert_to(%s::jsonb::text, 'UTF8')), 'hex') END AS same
        FROM events WHERE event_id = %s
        """,
        (payload_json, payload_json, event_id),
    )
    row = cur.fetchone()
    if row is None:
        return None
    return RecordResult(
        status=RecordStatus.DUPLICATE if row["same"] else RecordStatus.CONFLICT,
        order_id=row["order_id"],
        event_row_id=row["id"],
        event_status=EventStatus(row["status"]),
    )


def _find_or_create_order(
    cur: psycopg2.extras.RealDictCursor, shop_id: int, gid: str | None, name: str | None
) -> int:
    """The one orders row of this Shopify order, created if needed.

    Keyed on (shop, order_ref) with order_ref = GID if known else the name. An event that names the
    order differently from earlier ones (name only, then GID + name) still finds the earlier row,
    because events of one order must serialise on one row.
    """
    row = None
    if gid is not None:
        cur.execute(
            "SELECT id FROM orders WHERE shop_id = %s AND (order_ref = %s OR order_gid = %s)"
            " ORDER BY (order_ref = %s) DESC, id LIMIT 1",
            (shop_id, gid, gid, gid),
        )
        row = cur.fetchone()
    if row is None and name is not None:
        # A row known by this name, unless it is already known to be a different order.
        cur.execute(
            "SELECT id FROM orders WHERE shop_id = %s AND (order_ref = %s OR order_name = %s)"
            " AND (%s::text IS NULL OR order_gid IS NULL OR order_gid = %s) ORDER BY id LIMIT 1",
            (shop_id, name, name, gid, gid),
        )
        row = cur.fetchone()
    if row is not None:
        _fill_order(cur, row["id"], gid, name)
        return row["id"]
    cur.execute(
        """
        INSERT INTO orders (shop_id, order_ref, order_gid, order_name) VALUES (%s, %s, %s, %s)
        ON CONFLICT (shop_id, order_ref) DO UPDATE SET
            order_gid = COALESCE(orders.order_gid, EXCLUDED.order_gid),
            order_name = COALESCE(orders.order_name, EXCLUDED.order_name)
        RETURNING id
        """,
        (shop_id, gid if gid is not None else name, gid, name),
    )
    created = cur.fetchone()
    assert created is not None
    return int(created["id"])


def _fill_order(
    cur: psycopg2.extras.RealDictCursor, order_id: int, gid: str | None, name: str | None
) -> None:
    # Only write when something is missing: an UPDATE per event would serialise all ingest of a
    # busy order on its row lock for nothing.
    cur.execute(
        """
        UPDATE orders SET order_gid = COALESCE(order_gid, %s), order_name = COALESCE(order_name, %s)
        WHERE id = %s AND ((order_gid IS NULL AND %s::text IS NOT NULL)
                           OR (order_name IS NULL AND %s::text IS NOT NULL))
        """,
        (gid, name, order_id, gid, name),
    )


def _find_or_create_return(
    cur: psycopg2.extras.RealDictCursor,
    shop_id: int,
    platform_return_id: str,
    gid: str | None,
    name: str | None,
) -> tuple[int, int]:
    """(return row id, its order id). An existing return keeps its order: it never moves."""
    cur.execute(
        "SELECT id, order_id FROM returns WHERE shop_id = %s AND platform_return_id = %s",
        (shop_id, platform_return_id),
    )
    row = cur.fetchone()
    if row is not None:
        _fill_order(cur, row["order_id"], gid, name)
        return row["id"], row["order_id"]
    order_id = _find_or_create_order(cur, shop_id, gid, name)
    cur.execute(
        "INSERT INTO returns (shop_id, platform_return_id, order_id) VALUES (%s, %s, %s)"
        " ON CONFLICT (shop_id, platform_return_id) DO NOTHING RETURNING id, order_id",
        (shop_id, platform_return_id, order_id),
    )
    row = cur.fetchone()
    if row is None:
        # A concurrent first event of the same return won; its (now committed) row is the one.
        cur.execute(
            "SELECT id, order_id FROM returns WHERE shop_id = %s AND platform_return_id = %s",
            (shop_id, platform_return_id),
        )
        row = cur.fetchone()
    assert row is not None
    return row["id"], row["order_id"]


def record_event(event: ReturnEvent, payload: Mapping[str, Any]) -> RecordResult:
    """Store one validated event with the parsed body it came from (``payload``, unknown fields
    and all: what the producer sent is kept as sent).

    Raises ``workers.store.db.DatabaseUnavailable`` when Postgres cannot be reached; nothing is
    stored then.
    """
    payload_json = _payload_json(payload)
    ret = event.event_return
    try:
        with transaction() as cur:
            cur.execute("SELECT id FROM shops WHERE domain = %s", (event.shop,))
            shop = cur.fetchone()
            if shop is None:
                return RecordResult(status=RecordStatus.UNKNOWN_SHOP)
            # Re-deliveries are the common case: answer them without touching order/return rows.
            existing = _compare_existing(cur, event.id, payload_json)
            if existing is not None:
                if existing.status is RecordStatus.DUPLICATE and existing.is_open and existing.event_row_id:
                    outbox.rearm(cur, existing.event_row_id)
                return existing
            return_id, order_id = _find_or_create_return(
                cur, shop["id"], ret.id, ret.order.gid, ret.order.name
            )
            cur.execute(
                """
                INSERT INTO events (event_id, shop_id, return_id, order_id, type, occurred_at, payload)
                VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)
                ON CONFLICT (event_id) DO NOTHING RETURNING id
                """,
                (event.id, shop["id"], return_id, order_id, event.type, event.occurred_at, payload_json),
            )
            inserted = cur.fetchone()
            if inserted is None:
                raced = _compare_existing(cur, event.id, payload_json)
                # Roll back the order/return rows this attempt may have created for nothing.
                raise _LostInsertRace(raced or RecordResult(status=RecordStatus.CONFLICT))
            outbox.notify(cur)
            return RecordResult(
                status=RecordStatus.ACCEPTED,
                order_id=order_id,
                event_row_id=inserted["id"],
                event_status=EventStatus.ACCEPTED,
            )
    except _LostInsertRace as race:
        return race.result


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
