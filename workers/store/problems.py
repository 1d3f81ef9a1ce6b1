"""The error inbox: one open problem per return and category, seen again and again until it goes.

Written in the same fenced statement as the return's state (``returns.finish_return``), so the
inbox never disagrees with the status API. A return that syncs, or moves on to another problem,
solves its open ones by itself; an operator may solve one by hand, with a comment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workers.statuses import Category, Severity, SyncState
from workers.store.db import transaction


def severity_of(category: Category, sync: SyncState) -> Severity:
    if sync in (SyncState.FAILED, SyncState.REJECTED):
        return Severity.ERROR
    if category in (Category.ORDER_NOT_FULFILLED, Category.BUDGET):
        return Severity.INFO
    if category in (Category.INTERNAL_ERROR, Category.INVALID_EVENT):
        return Severity.ERROR
    return Severity.WARNING


def note(cur: Any, return_id: int, category: Category, sync: SyncState, reason: str) -> None:
    """The return's current problem (inside the caller's transaction)."""
    cur.execute(
        "UPDATE problems SET solved_at = now(), solved_by = 'sync', comment = 'moved on to ' || %s"
        " WHERE return_id = %s AND solved_at IS NULL AND category <> %s",
        (category, return_id, category),
    )
    cur.execute(
        """
        INSERT INTO problems (shop_id, order_id, return_id, category, severity, reason)
        SELECT shop_id, order_id, id, %s, %s, %s FROM returns WHERE id = %s
        ON CONFLICT (return_id, category) WHERE solved_at IS NULL DO UPDATE SET
            last_seen = now(), occurrences = problems.occurrences + 1,
            reason = EXCLUDED.reason, severity = EXCLUDED.severity
        """,
        (category, severity_of(category, sync), reason, return_id),
    )


@dataclass(frozen=True)
class Problem:
    id: int
    shop: str
    order_id: int
    order_name: str | None
    return_id: str
    category: Category
    severity: Severity
    reason: str
    sync: SyncState
    first_seen: datetime
    last_seen: datetime
    occurrences: int
    solved_at: datetime | None
    solved_by: str | None
    comment: str | None


def listing(
    shop: str | None = None,
    category: Category | None = None,
    *,
    include_solved: bool = False,
    search: str | None = None,
    limit: int = 200,
) -> list[Problem]:
    """The inbox, newest first; ``search`` matches an order name, order GID or return id."""
    with transaction() as cur:
        cur.execute(
            """
            SELECT p.*, s.domain, o.order_name, r.platform_return_id, r.sync
            FROM problems p JOIN shops s ON s.id = p.shop_id JOIN orders o ON o.id = p.order_id
            JOIN returns r ON r.id = p.return_id
            WHERE (%(shop)s::text IS NULL OR s.domain = %(shop)s)
              AND (%(category)s::text IS NULL OR p.category = %(category)s)
              AND (%(solved)s OR p.solved_at IS NULL)
              AND (%(search)s::text IS NULL OR o.order_name = %(search)s OR o.order_gid = %(search)s
                   OR r.platform_return_id = %(search)s OR o.order_ref = %(search)s)
            ORDER BY p.solved_at IS NOT NULL, p.last_seen DESC, p.id DESC
            LIMIT %(limit)s
            """,
            {"shop": shop, "category": category, "solved": include_solved, "search": search, "limit": limit},
        )
        rows = cur.fetchall()
    return [
        Problem(
            id=row["id"],
            shop=row["domain"],
            order_id=row["order_id"],
            order_name=row["order_name"],
            return_id=row["platform_return_id"],
            category=Category(row["category"]),
            severity=Severity(row["severity"]),
            reason=row["reason"],
            sync=SyncState(row["sync"]),
            first_seen=row["first_seen"],
            last_seen=row["last_seen"],
            occurrences=row["occurrences"],
            solved_at=row["solved_at"],
            solved_by=row["solved_by"],
            comment=row["comment"],
        )
        for row in rows
    ]


def solve(problem_id: int, by: str, comment: str | None) -> bool:
    """An operator marks a problem solved (looked at, dealt with outside the sync), or comments on
    it; returns False for an unknown or already solved one."""
    with transaction() as cur:
        cur.execute(
            "UPDATE problems SET solved_at = now(), solved_by = %s, comment = %s"
            " WHERE id = %s AND solved_at IS NULL RETURNING id",
            (by, comment, problem_id),
        )
        return cur.fetchone() is not None


def comment(problem_id: int, text: str) -> bool:
    with transaction() as cur:
        cur.execute("UPDATE problems SET comment = %s WHERE id = %s RETURNING id", (text, problem_id))
        return cur.fetchone() is not None
