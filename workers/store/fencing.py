"""Fencing tokens: the one place that decides whether a holder of an order may still write.

Each holder of an order's lease (``workers.locking``) bumps ``orders.fence`` when it takes the
lease and keeps the new value as its token. A holder whose lease was lost (it expired while the
holder was stopped or stuck, and another worker took the order) still has the old token: every
write it attempts through ``fenced`` raises ``LostLock`` and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2.extras

from workers.store.db import transaction


class LostLock(Exception):
    """The holder's fencing token is no longer current: another worker owns the order now."""


def check_fence(cur: Any, order_id: int, token: int, *, share_lock: bool = False) -> None:
    """Raise ``LostLock`` unless ``token`` is the order's current fence.

    With ``share_lock`` the row is locked FOR SHARE: a new holder's bump waits until the caller's
    transaction ends, so a check that passed stays true until its writes are committed.
    """
    cur.execute("SELECT fence FROM orders WHERE id = %s" + (" FOR SHARE" if share_lock else ""), (order_id,))
    row = cur.fetchone()
    current = None if row is None else int(row["fence"] if isinstance(row, dict) else row[0])
    if current != token:
        raise LostLock(f"order {order_id}: fence is {current}, this holder has {token}")


@contextmanager
def fenced(order_id: int, token: int) -> Iterator[psycopg2.extras.RealDictCursor]:
    """A transaction that only proceeds while ``token`` is the order's current fence."""
    with transaction() as cur:
        check_fence(cur, order_id, token, share_lock=True)
        yield cur
