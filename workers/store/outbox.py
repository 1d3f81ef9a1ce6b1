"""The outbox of doorbells: which orders have work nobody has rung for yet.

An accepted event is its own outbox entry: ``enqueued_at`` NULL means "no doorbell rung for it".
Writers set that state in their own transaction; the relay (``workers.relay``) polls for it, rings
the order and marks the events. Rare writers (an operator's replay, a reinstall) also ``notify``
the relay, which Postgres delivers only when their transaction commits; ingest does not, because a
notifying commit holds a database-wide lock through its WAL flush (migration 0008).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workers.statuses import OPEN_EVENT_STATUSES
from workers.store.db import transaction

WORK_CHANNEL = "returnsync_work"


def notify(cur: Any) -> None:
    """Wake the relays once the caller's transaction commits (a no-op if it rolls back)."""
    cur.execute("SELECT pg_notify(%s, '')", (WORK_CHANNEL,))


def rearm(cur: Any, event_row_id: int) -> None:
    """A producer's retry of an event still open: its doorbell may have been lost; ring again."""
    cur.execute(
        "UPDATE events SET enqueued_at = NULL WHERE id = %s AND status = ANY(%s) AND enqueued_at IS NOT NULL",
        (event_row_id, sorted(OPEN_EVENT_STATUSES)),
    )
    if cur.rowcount:
        notify(cur)


@dataclass(frozen=True)
class Unrung:
    order_id: int
    shop_id: int
    event_ids: tuple[int, ...]


def unrung(limit: int = 500) -> list[Unrung]:
    """Open events no doorbell was rung for (accepted, or waiting and woken), per order, oldest
    orders first: at most ``limit`` orders from the oldest ``4 * limit`` such events (an order's
    later ones are rung on the next round)."""
    with transaction() as cur:
        # A plain index scan, never a bitmap one (which the planner picks while the table has no
        # statistics, as after a bulk load): only a plain scan marks the index entries of rung
        # events dead, so that later polls skip them (migration 0011).
        cur.execute(
            "SET LOCAL enable_bitmapscan = off;"
            " SELECT id, order_id, shop_id FROM events WHERE status = ANY(%s) AND enqueued_at IS NULL"
            " ORDER BY id LIMIT %s",
            (sorted(OPEN_EVENT_STATUSES), 4 * limit),
        )
        rows = cur.fetchall()
    orders: dict[int, tuple[int, list[int]]] = {}
    for row in rows:
        if row["order_id"] not in orders:
            if len(orders) == limit:
                continue
            orders[row["order_id"]] = (row["shop_id"], [])
        orders[row["order_id"]][1].append(row["id"])
    return [Unrung(order_id, shop_id, tuple(ids)) for order_id, (shop_id, ids) in orders.items()]


def shop_of(order_id: int) -> int | None:
    with transaction() as cur:
        cur.execute("SELECT shop_id FROM orders WHERE id = %s", (order_id,))
        row = cur.fetchone()
    return int(row["shop_id"]) if row else None


def mark_rung(event_row_ids: Sequence[int]) -> None:
    """These events' doorbell is out (the sweep leaves them alone for a while)."""
    with transaction() as cur:
        cur.execute("UPDATE events SET enqueued_at = now() WHERE id = ANY(%s)", (list(event_row_ids),))


def mark_enqueued(order_id: int) -> None:
    """A doorbell was rung for all of the order's open events (the sweep's and replay's ring)."""
    with transaction() as cur:
        cur.execute(
            "UPDATE events SET enqueued_at = now() WHERE order_id = %s AND status = ANY(%s)",
            (order_id, sorted(OPEN_EVENT_STATUSES)),
        )


def rearm_shop(shop_id: int) -> int:
    """Every open event of the shop rung again (after an install, a reinstall, an uninstall): its
    orders run now and find out where they stand. Returns how many events."""
    with transaction() as cur:
        cur.execute(
            "UPDATE events SET enqueued_at = NULL WHERE shop_id = %s AND status = ANY(%s)",
            (shop_id, sorted(OPEN_EVENT_STATUSES)),
        )
        count = int(cur.rowcount)
        cur.execute(
            "UPDATE orders SET next_run_at = NULL WHERE shop_id = %s AND next_run_at IS NOT NULL", (shop_id,)
        )
        if count:
            notify(cur)
    return count


def wake_order(shop_domain: str, order_gid: str) -> int:
    """Shopify says the order changed (fulfilled): its waiting events are due now, not at the next
    waiting retry. Returns how many events were woken."""
    with transaction() as cur:
        cur.execute(
            """
            WITH woken AS (
                UPDATE orders o SET next_run_at = NULL FROM shops s
                WHERE s.id = o.shop_id AND s.domain = %s AND o.order_gid = %s
                RETURNING o.id
            )
            UPDATE events SET enqueued_at = NULL
            WHERE order_id IN (SELECT id FROM woken) AND status = ANY(%s)
            """,
            (shop_domain, order_gid, sorted(OPEN_EVENT_STATUSES)),
        )
        count = int(cur.rowcount)
        if count:
            notify(cur)
    return count
