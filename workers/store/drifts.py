"""Drifts: differences between what the sync applied and what Shopify holds (table ``drifts``).

The drift check (``workers.reconcile.drift``) records each finding here, together with what it
did about it, in one fenced transaction with the return's own change (``settle``), so a finding
is never recorded as repaired without the repair, nor a repair made without its finding. The
migration 0005 documents every kind and action; the error inbox lists the open findings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from workers.statuses import Category, ShopifyStatus, SyncState
from workers.store import problems, returns
from workers.store.db import transaction
from workers.store.fencing import fenced


class DriftKind(StrEnum):
    RETURN_STATUS = "return_status"  # Shopify's return is in another state than the one applied
    RETURN_MISSING = "return_missing"  # the mapped Shopify return is not there
    ORDER_MISSING = "order_missing"  # the Shopify order is not there
    REFUND_TAG = "refund_tag"  # a live return's refund-method tag is not on the order
    EXCHANGE_NOTE = "exchange_note"  # the exchange note appended for the return is not in the note


class DriftAction(StrEnum):
    REPORTED = "reported"
    REPAIRED = "repaired"


class DriftMode(StrEnum):
    """``shops.drift_mode``: what the check does with a new finding."""

    REPORT = "report"
    REPAIR = "repair"


@dataclass(frozen=True)
class Finding:
    kind: DriftKind
    expected: str
    actual: str


@dataclass(frozen=True)
class Drift:
    id: int
    shop_id: int
    order_id: int
    return_id: int
    kind: DriftKind
    expected: str
    actual: str
    found_at: datetime
    action: DriftAction
    resolved_at: datetime | None


@dataclass(frozen=True)
class Repair:
    """Re-apply the return (``returns.reset_for_drift_repair``)."""

    detail: str
    redecorate: bool = False
    renote: bool = False
    forget_mapping: bool = False


@dataclass(frozen=True)
class Conflict:
    """Mark the return a conflict Shopify decided (``returns.mark_drift_conflict``)."""

    detail: str
    shopify_status: ShopifyStatus | None = None


def drift_mode(shop_id: int) -> DriftMode:
    with transaction() as cur:
        cur.execute("SELECT drift_mode FROM shops WHERE id = %s", (shop_id,))
        row = cur.fetchone()
    if row is None:
        raise LookupError(f"no shop with id {shop_id}")
    return DriftMode(row["drift_mode"])


def set_drift_mode(shop_id: int, mode: DriftMode) -> None:
    with transaction() as cur:
        cur.execute("UPDATE shops SET drift_mode = %s, updated_at = now() WHERE id = %s", (mode, shop_id))


def open_kinds(return_id: int) -> set[DriftKind]:
    with transaction() as cur:
        cur.execute("SELECT kind FROM drifts WHERE return_id = %s AND resolved_at IS NULL", (return_id,))
        return {DriftKind(row["kind"]) for row in cur.fetchall()}


def settle(
    order_id: int,
    token: int,
    shop_id: int,
    return_id: int,
    findings: Sequence[tuple[Finding, DriftAction]],
    *,
    repair: Repair | None = None,
    conflict: Conflict | None = None,
) -> list[int]:
    """One check of one return, in one transaction fenced by the order lock's ``token``: record
    the new findings (an open one of the same kind is kept, not doubled), resolve open findings
    of kinds no longer found, apply the repair or mark the conflict, and move the check's cursor.
    Returns the ids of the findings recorded now."""
    recorded: list[int] = []
    with fenced(order_id, token) as cur:
        for finding, action in findings:
            cur.execute(
                """
                INSERT INTO drifts (shop_id, order_id, return_id, kind, expected, actual, action)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (return_id, kind) WHERE resolved_at IS NULL DO NOTHING
                RETURNING id
                """,
                (shop_id, order_id, return_id, finding.kind, finding.expected, finding.actual, action),
            )
            row = cur.fetchone()
            if row is not None:
                recorded.append(int(row["id"]))
        cur.execute(
            "UPDATE drifts SET resolved_at = now()"
            " WHERE return_id = %s AND resolved_at IS NULL AND NOT (kind = ANY(%s))",
            (return_id, [finding.kind.value for finding, _ in findings]),
        )
        _inbox(cur, return_id, findings, repair, conflict)
        if repair is not None:
            returns.reset_for_drift_repair(
                cur,
                order_id,
                return_id,
                detail=repair.detail,
                redecorate=repair.redecorate,
                renote=repair.renote,
                forget_mapping=repair.forget_mapping,
            )
        elif conflict is not None:
            returns.mark_drift_conflict(cur, return_id, conflict.detail, conflict.shopify_status)
        returns.mark_drift_checked(cur, return_id)
    return recorded


def _inbox(
    cur: Any,
    return_id: int,
    findings: Sequence[tuple[Finding, DriftAction]],
    repair: Repair | None,
    conflict: Conflict | None,
) -> None:
    """The error inbox shows an open drift as the return's problem (category ``drift``) until a
    later check no longer finds it, or the repair's run syncs the return."""
    if not findings:
        cur.execute(
            "UPDATE problems SET solved_at = now(), solved_by = 'sync', comment = 'no longer found'"
            " WHERE return_id = %s AND category = %s AND solved_at IS NULL",
            (return_id, Category.DRIFT),
        )
        return
    found = "; ".join(
        f"{f.kind}: Shopify shows {f.actual}, the sync applied {f.expected}" for f, _ in findings
    )
    if repair is not None:
        reason, sync = f"drift, being repaired ({found})", SyncState.PENDING
    elif conflict is not None:
        reason, sync = f"drift, resolve by hand ({found})", SyncState.CONFLICT
    else:
        reason, sync = f"drift, reported ({found})", SyncState.SYNCED
    problems.note(cur, return_id, Category.DRIFT, sync, reason)


def mark_checked(return_ids: Sequence[int]) -> None:
    """Move the check's cursor past returns it could not compare (no fencing: the cursor is not
    sync state)."""
    with transaction() as cur:
        cur.execute("UPDATE returns SET drift_checked_at = now() WHERE id = ANY(%s)", (list(return_ids),))


def _drift(row: Mapping[str, Any]) -> Drift:
    return Drift(
        id=row["id"],
        shop_id=row["shop_id"],
        order_id=row["order_id"],
        return_id=row["return_id"],
        kind=DriftKind(row["kind"]),
        expected=row["expected"],
        actual=row["actual"],
        found_at=row["found_at"],
        action=DriftAction(row["action"]),
        resolved_at=row["resolved_at"],
    )


def open_drifts(shop_id: int | None = None, limit: int = 100) -> list[Drift]:
    """Unresolved findings, newest first (what the error inbox lists under ``drift``)."""
    with transaction() as cur:
        cur.execute(
            "SELECT * FROM drifts WHERE resolved_at IS NULL AND (%s::bigint IS NULL OR shop_id = %s)"
            " ORDER BY found_at DESC, id DESC LIMIT %s",
            (shop_id, shop_id, limit),
        )
        return [_drift(row) for row in cur.fetchall()]


def drifts_of_return(return_id: int) -> list[Drift]:
    """Every finding of the return, open or resolved, oldest first."""
    with transaction() as cur:
        cur.execute("SELECT * FROM drifts WHERE return_id = %s ORDER BY id", (return_id,))
        return [_drift(row) for row in cur.fetchall()]
