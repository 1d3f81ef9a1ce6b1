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

from workers.store.db import single_statement
from workers.store.fencing import fenced_order_update


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
    fenced_order_update(
        order_id,
        token,
        "snapshot = %s, snapshot_fence = %s, next_run_at = %s",
        (None if snapshot is None else psycopg2.extras.Json(snapshot), token, next_run_at),
    )


def carry(order_id: int, token: int, *, next_run_at: datetime | None) -> None:
    """The end of a run that changed nothing on Shopify: it passes the snapshot it was given on to
    the next, and says when the order is due again."""
    fenced_order_update(
        order_id,
        token,
        "next_run_at = %s, snapshot_fence = CASE WHEN snapshot_fence = %s THEN %s ELSE snapshot_fence END",
        (next_run_at, token - 1, token),
    )
