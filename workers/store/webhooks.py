"""Shopify's webhook deliveries: stored before the 200, de-duplicated on the webhook id, processed
after (and again by the beat, should a process die in between)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workers.store.db import transaction


@dataclass(frozen=True)
class Delivery:
    id: int
    webhook_id: str
    topic: str
    shop_domain: str
    payload: dict[str, Any]
    processed: bool


def record(
    webhook_id: str,
    event_id: str | None,
    topic: str,
    shop_domain: str,
    payload: dict[str, Any],
    triggered_at: datetime | None,
) -> tuple[int, bool]:
    """Store a delivery; returns (its row id, whether it is new). A retry of a stored one is not."""
    with transaction() as cur:
        cur.execute(
            """
            INSERT INTO webhook_deliveries (webhook_id, event_id, topic, shop_domain, payload, triggered_at)
            VALUES (%s, %s, %s, %s, %s::jsonb, %s)
            ON CONFLICT (webhook_id) DO NOTHING RETURNING id
            """,
            (webhook_id, event_id, topic, shop_domain, json.dumps(payload), triggered_at),
        )
        row = cur.fetchone()
        if row is not None:
            return int(row["id"]), True
        cur.execute("SELECT id FROM webhook_deliveries WHERE webhook_id = %s", (webhook_id,))
        existing = cur.fetchone()
    assert existing is not None
    return int(existing["id"]), False


def claim(delivery_id: int) -> Delivery | None:
    """The delivery, if it still needs processing (none of it twice: the row is locked meanwhile
    by the caller's processing, see ``finish``)."""
    with transaction() as cur:
        cur.execute(
            "SELECT id, webhook_id, topic, shop_domain, payload, processed_at"
            " FROM webhook_deliveries WHERE id = %s",
            (delivery_id,),
        )
        row = cur.fetchone()
    if row is None or row["processed_at"] is not None:
        return None
    return Delivery(row["id"], row["webhook_id"], row["topic"], row["shop_domain"], row["payload"], False)


def finish(delivery_id: int, outcome: str, detail: str | None) -> None:
    with transaction() as cur:
        cur.execute(
            "UPDATE webhook_deliveries SET processed_at = now(), outcome = %s, detail = %s WHERE id = %s",
            (outcome, detail, delivery_id),
        )


def pending(older_than_s: float, limit: int = 100) -> list[int]:
    """Deliveries stored but never processed (the web process died after its 200)."""
    with transaction() as cur:
        cur.execute(
            "SELECT id FROM webhook_deliveries WHERE processed_at IS NULL"
            " AND received_at < now() - %s * interval '1 second' ORDER BY id LIMIT %s",
            (older_than_s, limit),
        )
        return [row["id"] for row in cur.fetchall()]
