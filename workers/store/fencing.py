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

from workers.store.db import statement, transaction


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


# The condition a ``fenced_statement`` must carry in its WHERE clause.
FENCE_HOLDS = "EXISTS (SELECT 1 FROM holder_fence)"


def fenced_statement(order_id: int, token: int, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """One write in one round trip that happens only while ``token`` is the order's fence.

    ``sql`` follows a first common table expression, ``holder_fence``, which reads the fence FOR
    SHARE: it starts with the statement (or with more ``, name AS (...)`` expressions), tests
    ``FENCE_HOLDS`` where the fence must hold and says what it returns. The statement is its own
    transaction, so the guarantee is ``fenced``'s: a new holder's bump waits for the write, and a
    write after the bump finds nothing. Returns the rows; none because the fence moved raises
    ``LostLock``."""
    assert FENCE_HOLDS in sql, "a fenced statement must test FENCE_HOLDS"
    return fenced_call(
        order_id,
        token,
        "WITH holder_fence AS (SELECT 1 FROM orders WHERE id = %(fence_order)s AND fence = %(fence_token)s"
        " FOR SHARE) " + sql,
        params,
    )


def fenced_call(order_id: int, token: int, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """A statement that tests the fence itself, given ``%(fence_order)s`` and ``%(fence_token)s``
    (``fenced_statement``'s, or a function of the schema that reads the fence as its first
    expression does). Returns its rows; none because the fence moved raises ``LostLock``."""
    rows = statement(sql, {**params, "fence_order": order_id, "fence_token": token})
    if not rows:
        # Nothing came back: the fence moved, or there was nothing to write (raise only for the first).
        with transaction() as cur:
            check_fence(cur, order_id, token)
    return rows


def fenced_order_update(order_id: int, token: int, assignments: str, params: tuple[Any, ...]) -> None:
    """``UPDATE orders SET <assignments>`` of the order row itself, only while ``token`` is its
    fence: the row carries the fence, so the UPDATE compares it under the row's own lock (a new
    holder's bump waits for it, or it finds nothing after the bump and raises ``LostLock``)."""
    if not statement(
        f"UPDATE orders SET {assignments} WHERE id = %s AND fence = %s RETURNING 1",
        (*params, order_id, token),
    ):
        raise LostLock(f"order {order_id}: the fence moved, this holder has {token}")
