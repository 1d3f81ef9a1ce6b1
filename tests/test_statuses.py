"""Every status enum of workers/statuses.py is mirrored by a CHECK in Postgres, value for value."""

from __future__ import annotations

import re
from enum import StrEnum

import pytest

from workers.statuses import (
    CallOutcome,
    Category,
    EventStatus,
    EventType,
    ReturnState,
    RunOutcome,
    Severity,
    ShopifyStatus,
    SyncState,
)
from workers.store.db import transaction

MIRRORS = [
    ("events", "status", EventStatus),
    ("events", "type", EventType),
    ("returns", "sync", SyncState),
    ("returns", "applied_state", ReturnState),
    ("returns", "shopify_status", ShopifyStatus),
    ("attempts", "outcome", RunOutcome),
    ("shopify_calls", "outcome", CallOutcome),
    ("returns", "category", Category),
    ("problems", "severity", Severity),
]


def check_values(table: str, column: str) -> set[str]:
    """The literals of the CHECK constraint on ``table.column``, as Postgres holds it."""
    with transaction() as cur:
        cur.execute(
            """
            SELECT pg_get_constraintdef(c.oid) AS definition
            FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
            WHERE t.relname = %s AND c.contype = 'c'
            """,
            (table,),
        )
        definitions = [row["definition"] for row in cur.fetchall()]
    mine = [d for d in definitions if re.search(rf"\b{column}\b", d) and "ANY" in d]
    assert len(mine) == 1, definitions
    return set(re.findall(r"'([^']*)'::text", mine[0]))


@pytest.mark.parametrize(("table", "column", "enum"), MIRRORS)
def test_the_sql_check_allows_exactly_the_enums_values(
    database: str, table: str, column: str, enum: type[StrEnum]
) -> None:
    assert check_values(table, column) == {member.value for member in enum}
