"""Reads and writes of orders, returns, events and attempts for the apply and the sweep.

Every write of sync state takes the holder's fencing token (``workers.locking``) and runs in a
transaction that first checks ``orders.fence`` under a share lock: a holder that lost its lock
writes nothing and gets ``LostLock``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg2.extras

from workers.locking import LostLock
from workers.store.db import transaction

OPEN_STATUSES = ("accepted", "waiting")
FINAL_STATUSES = frozenset({"applied", "superseded", "rejected", "conflict", "failed"})


@dataclass(frozen=True)
class OrderRow:
    id: int
    shop_id: int
    order_ref: str
    order_gid: str | None
    order_name: str | None
    fence: int
    next_run_at: datetime | None


@dataclass(frozen=True)
class EventRow:
    id: int
    event_id: str
    type: str
    occurred_at: datetime
    payload: Mapping[str, Any]
    status: str

    @property
    def snapshot(self) -> Mapping[str, Any]:
        """The return object of the event body (the full snapshot at occurred_at)."""
        return self.payload.get("return") or {}


@dataclass
class ReturnRow:
    id: int
    shop_id: int
    platform_return_id: str
    order_id: int
    shopify_return_gid: str | None
    shopify_status: str | None
    applied_state: str | None
    sync: str
    detail: str | None
    waiting_since: datetime | None
    note_appended: bool
    events: list[EventRow] = field(default_factory=list)

    @property
    def open_events(self) -> list[EventRow]:
        return [e for e in self.events if e.status in OPEN_STATUSES]


def _order(row: Mapping[str, Any]) -> OrderRow:
    return OrderRow(
        id=row["id"],
        shop_id=row["shop_id"],
        order_ref=row["order_ref"],
        order_gid=row["order_gid"],
        order_name=row["order_name"],
        fence=row["fence"],
        next_run_at=row["next_run_at"],
    )


def load_order(order_id: int) -> OrderRow | None:
    with transaction() as cur:
        cur.execute("SELECT * FROM orders WHERE id = %s", (order_id,))
        row = cur.fetchone()
    return _order(row) if row else None


def open_returns(order_id: int) -> list[ReturnRow]:
    """Returns of the order with at least one open event, each with all its events, in the order
    their first event happened (the return that happened first gets a contested item)."""
    with transaction() as cur:
        cur.execute(
            """
            SELECT r.* FROM returns r
            WHERE r.order_id = %s
              AND EXISTS (SELECT 1 FROM events e WHERE e.return_id = r.id AND e.status = ANY(%s))
            """,
            (order_id, list(OPEN_STATUSES)),
        )
        rows = cur.fetchall()
        if not rows:
            return []
        cur.execute(
            "SELECT id, return_id, event_id, type, occurred_at, payload, status FROM events"
            " WHERE return_id = ANY(%s) ORDER BY occurred_at, event_id",
            ([r["id"] for r in rows],),
        )
        events = cur.fetchall()
    result: dict[int, ReturnRow] = {}
    for r in rows:
        result[r["id"]] = ReturnRow(
            id=r["id"],
            shop_id=r["shop_id"],
            platform_return_id=r["platform_return_id"],
            order_id=r["order_id"],
            shopify_return_gid=r["shopify_return_gid"],
            shopify_status=r["shopify_status"],
            applied_state=r["applied_state"],
            sync=r["sync"],
            detail=r["detail"],
            waiting_since=r["waiting_since"],
            note_appended=r["note_appended"],
        )
    for e in events:
        result[e["return_id"]].events.append(
            EventRow(e["id"], e["event_id"], e["type"], e["occurred_at"], e["payload"], e["status"])
        )
    return sorted(result.values(), key=lambda r: (r.events[0].occurred_at, r.events[0].event_id, r.id))


def mapped_gids(shop_id: int) -> dict[str, int]:
    """Shopify Return GIDs already mapped to a platform return of the shop -> our return id."""
    with transaction() as cur:
        cur.execute(
            "SELECT id, shopify_return_gid FROM returns"
            " WHERE shop_id = %s AND shopify_return_gid IS NOT NULL",
            (shop_id,),
        )
        return {row["shopify_return_gid"]: row["id"] for row in cur.fetchall()}


def live_refund_methods(order_id: int, excluding_return_id: int) -> set[str]:
    """Refund methods of the order's other returns that carry a tag on Shopify (created or
    completed, not cancelled), across every order row naming the same Shopify order."""
    with transaction() as cur:
        cur.execute(
            """
            SELECT DISTINCT ON (r.id) e.payload -> 'return' ->> 'refund_method' AS method
            FROM returns r
            JOIN orders o ON o.id = r.order_id
            JOIN orders mine ON mine.id = %s
            JOIN events e ON e.return_id = r.id
            WHERE o.shop_id = mine.shop_id
              AND (o.id = mine.id OR (mine.order_gid IS NOT NULL AND o.order_gid = mine.order_gid))
              AND r.id <> %s
              AND r.applied_state IN ('created', 'completed')
              AND e.payload -> 'return' ? 'refund_method'
            ORDER BY r.id, e.occurred_at DESC, e.event_id DESC
            """,
            (order_id, excluding_return_id),
        )
        return {row["method"] for row in cur.fetchall() if row["method"]}


# --- Fenced writes -----------------------------------------------------------------------------


@contextmanager
def fenced(order_id: int, token: int) -> Iterator[psycopg2.extras.RealDictCursor]:
    """A transaction that only proceeds while ``token`` is the order's current fence.

    FOR SHARE on the order row: a new holder's ``fence = fence + 1`` waits until this transaction
    ends, so a check that passed stays true until our writes are committed.
    """
    with transaction() as cur:
        cur.execute("SELECT fence FROM orders WHERE id = %s FOR SHARE", (order_id,))
        row = cur.fetchone()
        if row is None or row["fence"] != token:
            current = row["fence"] if row else None
            raise LostLock(f"order {order_id}: fence is {current}, this holder has {token}")
        yield cur


def set_order_gid(order_id: int, token: int, order_gid: str) -> None:
    with fenced(order_id, token) as cur:
        cur.execute("UPDATE orders SET order_gid = %s WHERE id = %s", (order_gid, order_id))


def set_next_run_at(order_id: int, token: int, when: datetime | None) -> None:
    with fenced(order_id, token) as cur:
        cur.execute("UPDATE orders SET next_run_at = %s WHERE id = %s", (when, order_id))


def set_mapping(
    order_id: int,
    token: int,
    return_id: int,
    *,
    shopify_return_gid: str,
    shopify_status: str | None,
    applied_state: str | None = None,
) -> None:
    """Record the Shopify return behind a platform return, as soon as it is known: a retry must
    find it here rather than create a second one."""
    with fenced(order_id, token) as cur:
        cur.execute(
            """
            UPDATE returns SET shopify_return_gid = %s, shopify_status = %s,
                applied_state = COALESCE(%s, applied_state), updated_at = now()
            WHERE id = %s
            """,
            (shopify_return_gid, shopify_status, applied_state, return_id),
        )


def set_applied_state(order_id: int, token: int, return_id: int, applied_state: str) -> None:
    with fenced(order_id, token) as cur:
        cur.execute(
            "UPDATE returns SET applied_state = %s, updated_at = now() WHERE id = %s",
            (applied_state, return_id),
        )


def set_note_appended(order_id: int, token: int, return_id: int) -> None:
    with fenced(order_id, token) as cur:
        cur.execute("UPDATE returns SET note_appended = true, updated_at = now() WHERE id = %s", (return_id,))


def finish_return(
    order_id: int,
    token: int,
    return_id: int,
    *,
    sync: str,
    detail: str | None,
    event_statuses: Mapping[int, tuple[str, str | None]],
    waiting_since: datetime | None = None,
    count_attempt: bool = True,
) -> None:
    """Set a return's sync state and its open events' statuses in one transaction, so the status
    API never shows a return synced with events still pending (or the reverse).

    ``waiting_since`` is kept from the first wait (COALESCE) and cleared when no longer waiting.
    """
    with fenced(order_id, token) as cur:
        cur.execute(
            """
            UPDATE returns SET sync = %s, detail = %s,
                waiting_since = CASE WHEN %s = 'waiting' THEN COALESCE(waiting_since, %s) ELSE NULL END,
                attempts = attempts + %s, updated_at = now()
            WHERE id = %s
            """,
            (sync, detail, sync, waiting_since, 1 if count_attempt else 0, return_id),
        )
        for event_row_id, (status, event_detail) in event_statuses.items():
            cur.execute(
                """
                UPDATE events SET status = %s, detail = %s,
                    finished_at = CASE WHEN %s = ANY(%s) THEN now() ELSE NULL END
                WHERE id = %s AND return_id = %s AND status = ANY(%s)
                """,
                (
                    status,
                    event_detail,
                    status,
                    list(FINAL_STATUSES),
                    event_row_id,
                    return_id,
                    list(OPEN_STATUSES),
                ),
            )


# --- Attempts ----------------------------------------------------------------------------------


def start_attempt(order_id: int, worker: str | None) -> int:
    with transaction() as cur:
        cur.execute(
            "INSERT INTO attempts (order_id, worker) VALUES (%s, %s) RETURNING id", (order_id, worker)
        )
        return int(cur.fetchone()["id"])


def finish_attempt(attempt_id: int, outcome: str, detail: str | None) -> None:
    # Not fenced: the attempt row is a log of what this run did, including losing its lock.
    with transaction() as cur:
        cur.execute(
            "UPDATE attempts SET finished_at = now(), outcome = %s, detail = %s WHERE id = %s",
            (outcome, detail, attempt_id),
        )


def consecutive_failures(order_id: int, limit: int = 100) -> int:
    """How many of the order's latest finished runs in a row ended in ``retry`` (Shopify
    unreachable). Throttling and busy runs are not failures and neither count nor break the run."""
    with transaction() as cur:
        cur.execute(
            "SELECT outcome FROM attempts WHERE order_id = %s AND finished_at IS NOT NULL"
            " ORDER BY id DESC LIMIT %s",
            (order_id, limit),
        )
        outcomes = [row["outcome"] for row in cur.fetchall()]
    count = 0
    for outcome in outcomes:
        if outcome == "retry":
            count += 1
        elif outcome in ("throttled", "busy"):
            continue
        else:
            break
    return count


# --- Doorbells: sweep and replay (ringing itself is inbox.mark_enqueued) ----------------------


def due_orders(now: datetime, stale_after_s: float, limit: int = 500) -> list[int]:
    """Orders whose doorbell may have been lost: events still accepted that were never enqueued
    or enqueued longer ago than ``stale_after_s`` (and are not deliberately deferred by
    ``next_run_at``), and waiting events whose ``next_run_at`` has come."""
    stale_before = now - timedelta(seconds=stale_after_s)
    with transaction() as cur:
        cur.execute(
            """
            SELECT DISTINCT o.id FROM orders o JOIN events e ON e.order_id = o.id
            WHERE (e.status = 'accepted'
                   AND (e.enqueued_at IS NULL
                        OR (e.enqueued_at < %s AND (o.next_run_at IS NULL OR o.next_run_at <= %s))))
               OR (e.status = 'waiting' AND (o.next_run_at IS NULL OR o.next_run_at <= %s))
            ORDER BY o.id
            LIMIT %s
            """,
            (stale_before, now, now, limit),
        )
        return [row["id"] for row in cur.fetchall()]


def reset_for_replay(order_id: int) -> int:
    """Operator replay: failed and waiting events of the order go back to accepted, their returns
    to pending, and the waiting clock restarts. Returns how many events were reset."""
    with transaction() as cur:
        cur.execute(
            """
            UPDATE events SET status = 'accepted', detail = NULL, finished_at = NULL
            WHERE order_id = %s AND status IN ('failed', 'waiting')
            RETURNING return_id
            """,
            (order_id,),
        )
        reset = cur.fetchall()
        return_ids = sorted({row["return_id"] for row in reset})
        if return_ids:
            cur.execute(
                "UPDATE returns SET sync = 'pending', detail = NULL, waiting_since = NULL,"
                " updated_at = now() WHERE id = ANY(%s)",
                (return_ids,),
            )
        cur.execute("UPDATE orders SET next_run_at = NULL WHERE id = %s", (order_id,))
        # The retry chain restarts: a replay is a fresh start, not attempt n+1.
        cur.execute(
            "INSERT INTO attempts (order_id, finished_at, outcome, detail, worker)"
            " VALUES (%s, now(), 'replay', 'reset by operator', NULL)",
            (order_id,),
        )
        return len(reset)


def db_now() -> datetime:
    """The database clock: every timestamp compared by the sweep was written with it."""
    with transaction() as cur:
        cur.execute("SELECT now() AS now")
        return cur.fetchone()["now"]
