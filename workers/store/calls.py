"""The record of every call made to Shopify: the per-order timeline operators read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.statuses import CallOutcome
from workers.store.db import statement, transaction


@dataclass(frozen=True)
class CallRecord:
    """One HTTP exchange with Shopify, as stored in ``shopify_calls`` (never a token in it)."""

    operation: str
    outcome: CallOutcome
    http_status: int | None
    requested_cost: int | None
    actual_cost: int | None
    duration_ms: int
    detail: str | None = None


def record_call(shop_id: int, order_id: int | None, return_id: int | None, record: CallRecord) -> None:
    """Store one HTTP exchange with Shopify (a statement of its own: the record must survive a
    rollback of the caller's work, since the call to Shopify happened regardless)."""
    statement(
        """
        INSERT INTO shopify_calls (shop_id, order_id, return_id, operation, outcome, http_status,
                                   requested_cost, actual_cost, duration_ms, detail)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
        """,
        (
            shop_id,
            order_id,
            return_id,
            record.operation,
            record.outcome,
            record.http_status,
            record.requested_cost,
            record.actual_cost,
            max(0, int(record.duration_ms)),
            record.detail,
        ),
    )


def calls_for_order(order_id: int) -> list[dict[str, Any]]:
    """Every Shopify call made for an order, oldest first (ties broken by insertion order)."""
    with transaction() as cur:
        cur.execute(
            """
            SELECT id, shop_id, order_id, return_id, operation, outcome, http_status,
                   requested_cost, actual_cost, duration_ms, detail, at
            FROM shopify_calls
            WHERE order_id = %s
            ORDER BY at, id
            """,
            (order_id,),
        )
        return [dict(row) for row in cur.fetchall()]
