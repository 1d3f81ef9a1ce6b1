"""The order as the sync last knew it on Shopify, kept so the next run need not read it again.

A run ends knowing exactly what Shopify holds for the order when every one of its requests was
answered (no lost answer, no failed attempt): what it read, plus what its own mutations returned.
It saves that snapshot with its fencing token. The next holder of the order's lease has the next
token, so ``trusted`` hands the snapshot over only to it, and only if nothing else held the order in
between (a run that crashed, a drift check, a run that did not save). Anything Shopify changed on
its own (staff in the admin) is met by the mutations themselves: a transition Shopify's state no
longer allows is answered as a conflict, and the run reads the order and plans again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg2.extras

from workers.store.db import single_statement, statement
from workers.store.fencing import LostLock


def trusted(order_id: int, token: int) -> dict[str, Any] | None:
    """The snapshot the run just before this holder saved, if it was the one just before."""
    row = single_statement(
        "SELECT snapshot FROM orders WHERE id = %s AND snapshot_fence = %s AND snapshot IS NOT NULL",
        (order_id, token - 1),
    )
    return dict(row["snapshot"]) if row else None


def save(order_id: int, token: int, snapshot: dict[str, Any] | None, *, next_run_at: datetime | None) -> None:
    """The end of a run on its order row, in one statement: what it knows Shopify holds now
    (None: it is not sure, the next run reads) and when the order is due again (the sweep reads
    ``next_run_at``)."""
    _end_run(
        "UPDATE orders SET snapshot = %s, snapshot_fence = %s, next_run_at = %s"
        " WHERE id = %s AND fence = %s RETURNING 1",
        (None if snapshot is None else psycopg2.extras.Json(snapshot), token, next_run_at, order_id, token),
        order_id,
        token,
    )


def carry(order_id: int, token: int, *, next_run_at: datetime | None) -> None:
    """The end of a run that changed nothing on Shopify: it passes the snapshot it was given on to
    the next, and says when the order is due again."""
    _end_run(
        "UPDATE orders SET next_run_at = %s,"
        " snapshot_fence = CASE WHEN snapshot_fence = %s THEN %s ELSE snapshot_fence END"
        " WHERE id = %s AND fence = %s RETURNING 1",
        (next_run_at, token - 1, token, order_id, token),
        order_id,
        token,
    )


def _end_run(sql: str, params: tuple[Any, ...], order_id: int, token: int) -> None:
    # The order row carries the fence: the UPDATE compares it under the row's lock, so a new
    # holder's bump either waits for this write or makes it find nothing.
    if not statement(sql, params):
        raise LostLock(f"order {order_id}: fence moved, this holder has {token}")
