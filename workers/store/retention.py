"""Retention: what the sync keeps of finished work once it is old (``reconcile.retention``).

Open work is never touched: an event still accepted or waiting, a return pending, waiting or
failed (a replay needs its events' full bodies), or the call log and attempts of an order with
open events. Each function does at most ``limit`` rows and says how many it did; the next run
continues where this one stopped.
"""

from __future__ import annotations

import json
from datetime import datetime

from psycopg2.extras import execute_values

from workers.statuses import OPEN_EVENT_STATUSES, EventStatus, SyncState
from workers.store.db import transaction
from workers.store.privacy import _redacted

# Event statuses whose body is no longer needed once old: the work is done. Failed events are
# left whole, as replayable work.
_PRUNABLE = sorted({EventStatus.APPLIED, EventStatus.SUPERSEDED, EventStatus.REJECTED, EventStatus.CONFLICT})
# Returns whose events may be cut: nothing left to do, nothing an operator may replay.
_FINISHED = sorted({SyncState.SYNCED, SyncState.REJECTED, SyncState.CONFLICT})
_OPEN = sorted(OPEN_EVENT_STATUSES)


def prune_event_bodies(older_than: datetime, limit: int) -> int:
    """Bodies of events finished before ``older_than`` cut to the redacted minimum (ids, types,
    times, lines: what the status API and a re-run need). Stored as an erasure does it
    (``redacted_at``, and the digest of what was received, so the producer's re-delivery of the
    event is still a duplicate rather than a 409)."""
    with transaction() as cur:
        cur.execute(
            """
            SELECT e.id, e.payload FROM events e JOIN returns r ON r.id = e.return_id
            WHERE e.redacted_at IS NULL AND e.status = ANY(%(prunable)s)
              AND e.finished_at < %(before)s
              AND r.sync = ANY(%(finished)s)
              AND NOT EXISTS (SELECT 1 FROM events o WHERE o.return_id = r.id AND o.status = ANY(%(open)s))
            ORDER BY e.finished_at, e.id
            LIMIT %(limit)s
            FOR UPDATE OF e SKIP LOCKED
            """,
            {
                "prunable": _PRUNABLE,
                "before": older_than,
                "finished": _FINISHED,
                "open": _OPEN,
                "limit": limit,
            },
        )
        rows = cur.fetchall()
        if rows:
            execute_values(
                cur,
                """
                UPDATE events SET payload = v.body::jsonb, redacted_at = now(),
                    payload_digest = encode(sha256(convert_to(events.payload::text, 'UTF8')), 'hex')
                FROM (VALUES %s) AS v (id, body) WHERE events.id = v.id
                """,
                [(row["id"], json.dumps(_redacted(row["payload"]))) for row in rows],
            )
    return len(rows)


def _delete(table: str, where: str, older_than: datetime, limit: int) -> int:
    with transaction() as cur:
        cur.execute(
            f"""
            DELETE FROM {table} WHERE id IN (
                SELECT id FROM {table} t WHERE {where} ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
            """,
            {"before": older_than, "limit": limit, "open": _OPEN},
        )
        return int(cur.rowcount)


_NO_OPEN_WORK = (
    "(t.order_id IS NULL OR NOT EXISTS"
    " (SELECT 1 FROM events e WHERE e.order_id = t.order_id AND e.status = ANY(%(open)s)))"
)


def delete_calls(older_than: datetime, limit: int) -> int:
    """The call log of orders with no open work, older than ``older_than``."""
    return _delete("shopify_calls", f"t.at < %(before)s AND {_NO_OPEN_WORK}", older_than, limit)


def delete_attempts(older_than: datetime, limit: int) -> int:
    """Finished attempt rows of orders with no open work, started before ``older_than``."""
    where = f"t.finished_at IS NOT NULL AND t.started_at < %(before)s AND {_NO_OPEN_WORK}"
    return _delete("attempts", where, older_than, limit)


def delete_beat_runs(older_than: datetime, limit: int) -> int:
    return _delete("beat_runs", "t.started_at < %(before)s", older_than, limit)


def delete_resolved_drifts(older_than: datetime, limit: int) -> int:
    """Findings resolved before ``older_than`` (open ones stay, however old)."""
    return _delete("drifts", "t.resolved_at < %(before)s", older_than, limit)
