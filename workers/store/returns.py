"""Reads and writes of orders, returns, events and attempts for the apply run and the sweep.

Every write of sync state takes the holder's fencing token and runs inside ``fenced`` or as a
``fenced_statement``: a holder that lost its lock writes nothing and gets ``LostLock``
(``workers.store.fencing``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from workers import metrics
from workers.events import InvalidEvent, ReturnEvent, load_event
from workers.statuses import (
    FINAL_EVENT_STATUSES,
    OPEN_EVENT_STATUSES,
    Category,
    EventStatus,
    ReturnState,
    RunOutcome,
    ShopifyStatus,
    SyncState,
)
from workers.store import outbox, problems
from workers.store.db import single_statement, statement, transaction
from workers.store.fencing import FENCE_HOLDS, fenced, fenced_call, fenced_statement

_OPEN = sorted(OPEN_EVENT_STATUSES)
_FINAL = sorted(FINAL_EVENT_STATUSES)


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
class ReturnRow:
    id: int
    shop_id: int
    platform_return_id: str
    order_id: int
    shopify_return_gid: str | None
    shopify_status: ShopifyStatus | None
    applied_state: ReturnState | None
    sync: SyncState
    detail: str | None
    waiting_since: datetime | None
    note_appended: bool
    failures: int
    category: Category | None = None


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored, with where it stands."""

    row_id: int
    status: EventStatus
    event: ReturnEvent

    @property
    def is_open(self) -> bool:
        return self.status.is_open


@dataclass(frozen=True)
class UnreadableEvent:
    """A stored body that no longer validates (the contract tightened since it was accepted)."""

    row_id: int
    event_id: str
    status: EventStatus
    error: InvalidEvent


@dataclass(frozen=True)
class LoadedReturn:
    row: ReturnRow
    events: tuple[StoredEvent, ...]
    unreadable: tuple[UnreadableEvent, ...] = ()

    @property
    def open_events(self) -> tuple[StoredEvent, ...]:
        return tuple(e for e in self.events if e.is_open)


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


def _return(row: Mapping[str, Any]) -> ReturnRow:
    return ReturnRow(
        id=row["id"],
        shop_id=row["shop_id"],
        platform_return_id=row["platform_return_id"],
        order_id=row["order_id"],
        shopify_return_gid=row["shopify_return_gid"],
        shopify_status=ShopifyStatus(row["shopify_status"]) if row["shopify_status"] else None,
        applied_state=ReturnState(row["applied_state"]) if row["applied_state"] else None,
        sync=SyncState(row["sync"]),
        detail=row["detail"],
        waiting_since=row["waiting_since"],
        note_appended=row["note_appended"],
        failures=row["failures"],
        category=Category(row["category"]) if row.get("category") else None,
    )


def load_order(order_id: int) -> OrderRow | None:
    row = single_statement("SELECT * FROM orders WHERE id = %s", (order_id,))
    return _order(row) if row else None


def open_return_ids(order_id: int) -> list[int]:
    """Returns of the order with at least one open event, in the order their first event happened
    (the return that happened first gets a contested item). Ordered in SQL, so no event needs to
    be read into Python before each return is loaded on its own (``load_return``). A function of
    migration 0013, so its plan is kept per connection; it reads each return's events through
    their index (a join scanned every event when statistics were off, 7 ms a run)."""
    rows = statement("SELECT open_return_ids AS id FROM open_return_ids(%s, %s::text[])", (order_id, _OPEN))
    return [row["id"] for row in rows]


def get_return(return_id: int) -> ReturnRow:
    with transaction() as cur:
        cur.execute("SELECT * FROM returns WHERE id = %s", (return_id,))
        row = cur.fetchone()
    if row is None:
        raise LookupError(f"no return with id {return_id}")
    return _return(row)


def load_return(return_id: int) -> LoadedReturn:
    """The return with every one of its events, each read back into a ``ReturnEvent`` with the
    contract's schema. A body that no longer validates is set aside as ``UnreadableEvent``.
    One round trip: the events come aggregated with the row."""
    row = single_statement(_LOAD_RETURN, (return_id,))
    if row is None:
        raise LookupError(f"no return with id {return_id}")
    stored = row.pop("loaded_events")
    events: list[StoredEvent] = []
    unreadable: list[UnreadableEvent] = []
    for e in stored:
        status = EventStatus(e["status"])
        try:
            events.append(StoredEvent(e["id"], status, load_event(e["payload"])))
        except InvalidEvent as exc:
            unreadable.append(UnreadableEvent(e["id"], e["event_id"], status, exc))
    events.sort(key=lambda s: s.event.sort_key)
    return LoadedReturn(_return(row), tuple(events), tuple(unreadable))


_LOAD_RETURN = """
SELECT r.*, (
    SELECT COALESCE(json_agg(json_build_object(
        'id', e.id, 'event_id', e.event_id, 'status', e.status, 'payload', e.payload)), '[]')
    FROM events e WHERE e.return_id = r.id
) AS loaded_events
FROM returns r WHERE r.id = %s
"""


def owners_of(shop_id: int, gids: Sequence[str]) -> dict[str, int]:
    """Which of these Shopify Return GIDs a platform return of the shop already owns: GID -> our
    return id."""
    if not gids:
        return {}
    rows = statement(
        "SELECT id, shopify_return_gid FROM returns WHERE shopify_return_gid = ANY(%s) AND shop_id = %s",
        (list(gids), shop_id),
    )
    return {row["shopify_return_gid"]: row["id"] for row in rows}


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


def set_order_gid(order_id: int, token: int, order_gid: str) -> None:
    with fenced(order_id, token) as cur:
        cur.execute("UPDATE orders SET order_gid = %s WHERE id = %s", (order_gid, order_id))


def set_mapping(
    order_id: int,
    token: int,
    return_id: int,
    *,
    shopify_return_gid: str,
    shopify_status: ShopifyStatus | None,
    applied_state: ReturnState | None = None,
) -> None:
    """Record the Shopify return behind a platform return, as soon as it is known: a retry must
    find it here rather than create a second one."""
    fenced_statement(
        order_id,
        token,
        "UPDATE returns SET shopify_return_gid = %(gid)s, shopify_status = %(status)s,"
        " applied_state = COALESCE(%(state)s, applied_state), updated_at = now()"
        f" WHERE id = %(id)s AND {FENCE_HOLDS} RETURNING 1",
        {"gid": shopify_return_gid, "status": shopify_status, "state": applied_state, "id": return_id},
    )


def set_note_appended(order_id: int, token: int, return_id: int) -> None:
    fenced_statement(
        order_id,
        token,
        "UPDATE returns SET note_appended = true, updated_at = now()"
        f" WHERE id = %(id)s AND {FENCE_HOLDS} RETURNING 1",
        {"id": return_id},
    )


def finish_return(
    order_id: int,
    token: int,
    return_id: int,
    *,
    sync: SyncState,
    detail: str | None,
    event_statuses: Mapping[int, tuple[EventStatus, str | None]] | None = None,
    all_open: tuple[EventStatus, str | None] | None = None,
    waiting_since: datetime | None = None,
    applied_state: ReturnState | None = None,
    shopify_status: ShopifyStatus | None = None,
    reset_failures: bool = True,
    category: Category | None = None,
) -> None:
    """Set a return's sync state and its open events' statuses in one transaction, so the status
    API never shows a return synced with events still pending (or the reverse).

    ``event_statuses`` sets open events one by one (row id -> status); ``all_open`` gives every
    open event of the return the same status. ``waiting_since`` is kept from the first wait
    (COALESCE) and cleared when no longer waiting; ``applied_state`` and ``shopify_status`` are
    what the run reached and saw (kept when None). ``reset_failures``: the run got a clear answer
    for this return, so its chain of failed attempts ends. ``category``: why it is not synced (the
    error inbox, ``workers.store.problems``); None for a synced return.

    One round trip, one statement: the ``finish_return`` function of migration 0013, behind the
    fence, so its plan is kept per connection instead of made for every call.
    """
    mapped = dict(event_statuses or {})
    rows = fenced_call(
        order_id,
        token,
        "SELECT * FROM finish_return(%(fence_order)s, %(fence_token)s, %(id)s, %(sync)s, %(detail)s,"
        " %(waiting_since)s, %(applied_state)s, %(shopify_status)s, %(reset_failures)s, %(category)s,"
        " %(severity)s, %(reason)s, %(ids)s::bigint[], %(statuses)s::text[], %(details)s::text[],"
        " %(all_status)s, %(all_detail)s, %(open)s::text[], %(final)s::text[])",
        {
            "id": return_id,
            "sync": sync,
            "detail": detail,
            "waiting_since": waiting_since,
            "applied_state": applied_state,
            "shopify_status": shopify_status,
            "reset_failures": reset_failures,
            "category": category,
            "severity": problems.severity_of(category, sync) if category else None,
            "reason": (detail or str(category)) if category else None,
            "ids": list(mapped),
            "statuses": [status for status, _ in mapped.values()],
            "details": [event_detail for _, event_detail in mapped.values()],
            "all_status": all_open[0] if all_open else None,
            "all_detail": all_open[1] if all_open else None,
            "open": _OPEN,
            "final": _FINAL,
        },
    )
    # Counted once committed, so a rolled-back run counts nothing.
    for event in rows:
        if event["kind"] == "event" and event["status"] in _FINAL:
            metrics.event_finished(event["domain"], event["type"], event["status"], event["received_at"])


def count_failure(order_id: int, token: int, return_id: int) -> int:
    """One more failed attempt of the return; returns how many in a row it has now."""
    with fenced(order_id, token) as cur:
        cur.execute(
            "UPDATE returns SET failures = failures + 1, updated_at = now() WHERE id = %s RETURNING failures",
            (return_id,),
        )
        row = cur.fetchone()
    if row is None:
        raise LookupError(f"no return with id {return_id}")
    return int(row["failures"])


# --- Attempts ----------------------------------------------------------------------------------


def start_attempt(order_id: int, worker: str | None) -> tuple[int, datetime]:
    """A new attempt row: its id and when it started (the database clock, which the run goes by)."""
    row = single_statement(
        "INSERT INTO attempts (order_id, worker) VALUES (%s, %s) RETURNING id, started_at", (order_id, worker)
    )
    assert row is not None
    return int(row["id"]), row["started_at"]


def finish_attempt(attempt_id: int, outcome: RunOutcome, detail: str | None) -> None:
    # Not fenced: the attempt row is a log of what this run did, including losing its lock.
    statement(
        "UPDATE attempts SET finished_at = now(), outcome = %s, detail = %s WHERE id = %s",
        (outcome, detail, attempt_id),
    )


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
    to pending with a fresh failure count, and the waiting clock restarts. Returns how many events
    were reset."""
    with transaction() as cur:
        cur.execute(
            """
            UPDATE events SET status = 'accepted', detail = NULL, finished_at = NULL, enqueued_at = NULL
            WHERE order_id = %s AND status IN ('failed', 'waiting')
            RETURNING return_id
            """,
            (order_id,),
        )
        reset = cur.fetchall()
        if reset:
            outbox.notify(cur)
        return_ids = sorted({row["return_id"] for row in reset})
        if return_ids:
            cur.execute(
                "UPDATE returns SET sync = 'pending', detail = NULL, waiting_since = NULL, failures = 0,"
                " updated_at = now() WHERE id = ANY(%s)",
                (return_ids,),
            )
        cur.execute("UPDATE orders SET next_run_at = NULL WHERE id = %s", (order_id,))
        return len(reset)


def select_returns(
    shop_domain: str,
    *,
    return_id: str | None = None,
    order_id: int | None = None,
    category: Category | None = None,
) -> list[int]:
    """Return row ids for a repair: one platform return, an order's returns, or every return of a
    category in a shop."""
    with transaction() as cur:
        cur.execute(
            """
            SELECT r.id FROM returns r JOIN shops s ON s.id = r.shop_id
            WHERE s.domain = %(shop)s
              AND (%(ret)s::text IS NULL OR r.platform_return_id = %(ret)s)
              AND (%(order)s::bigint IS NULL OR r.order_id = %(order)s)
              AND (%(category)s::text IS NULL OR r.category = %(category)s)
            ORDER BY r.id
            """,
            {"shop": shop_domain, "ret": return_id, "order": order_id, "category": category},
        )
        return [int(row["id"]) for row in cur.fetchall()]


def repair_returns(return_ids: list[int], *, whole: bool) -> int:
    """An operator's repair of these returns; returns how many events go back to work.

    ``whole=False`` (*retry*): the failed and waiting events go back to accepted, and the next run
    plans from where Shopify stands. ``whole=True`` (*reset*): every event of the return does,
    what was applied is forgotten (the Shopify return it maps to is kept, so nothing is created
    twice), and the run replays the return from its stored events. Either way the failure count
    restarts and the relay rings the orders as soon as this commits.
    """
    if not return_ids:
        return 0
    statuses = ["failed", "waiting"] if not whole else [s.value for s in EventStatus]
    with transaction() as cur:
        cur.execute(
            """
            UPDATE events SET status = 'accepted', detail = NULL, finished_at = NULL, enqueued_at = NULL
            WHERE return_id = ANY(%s) AND status = ANY(%s) RETURNING order_id
            """,
            (return_ids, statuses),
        )
        reset = cur.fetchall()
        cur.execute(
            """
            UPDATE returns SET sync = 'pending', detail = NULL, category = NULL, waiting_since = NULL,
                failures = 0, applied_state = CASE WHEN %s THEN NULL ELSE applied_state END,
                updated_at = now()
            WHERE id = ANY(%s)
            """,
            (whole, return_ids),
        )
        cur.execute(
            "UPDATE problems SET solved_at = now(), solved_by = 'operator', comment = %s"
            " WHERE return_id = ANY(%s) AND solved_at IS NULL",
            ("reset" if whole else "retried", return_ids),
        )
        orders = sorted({row["order_id"] for row in reset})
        if orders:
            cur.execute("UPDATE orders SET next_run_at = NULL WHERE id = ANY(%s)", (orders,))
            outbox.notify(cur)
        return len(reset)


def db_now() -> datetime:
    """The database clock: every timestamp compared by the sweep was written with it."""
    row = single_statement("SELECT now() AS now", ())
    assert row is not None
    now: datetime = row["now"]
    return now


# --- Reconciliation: the waiting backoff, the horizon, the drift check --------------------------


def due_orders_backing_off(
    now: datetime, stale_after_s: float, base_s: float, cap_s: float, limit: int = 500
) -> list[int]:
    """``due_orders``, with waiting work on a growing schedule: a waiting event is rung again only
    once the time since it was last rung (``enqueued_at``) is at least as long as its return had
    been waiting then (``waiting_since``), and never less than ``base_s`` nor more than ``cap_s``.
    Looks after 5, 10, 20, 40 minutes... of waiting, then every ``cap_s`` up to the horizon."""
    stale_before = now - timedelta(seconds=stale_after_s)
    with transaction() as cur:
        cur.execute(
            """
            SELECT DISTINCT o.id FROM orders o
            JOIN events e ON e.order_id = o.id
            JOIN returns r ON r.id = e.return_id
            WHERE (e.status = 'accepted'
                   AND (e.enqueued_at IS NULL
                        OR (e.enqueued_at < %(stale)s
                            AND (o.next_run_at IS NULL OR o.next_run_at <= %(now)s))))
               OR (e.status = 'waiting' AND (o.next_run_at IS NULL OR o.next_run_at <= %(now)s)
                   AND (e.enqueued_at IS NULL OR r.waiting_since IS NULL
                        OR e.enqueued_at + LEAST(make_interval(secs => %(cap)s),
                                                 GREATEST(make_interval(secs => %(base)s),
                                                          e.enqueued_at - r.waiting_since)) <= %(now)s))
            ORDER BY o.id
            LIMIT %(limit)s
            """,
            {"stale": stale_before, "now": now, "base": base_s, "cap": cap_s, "limit": limit},
        )
        return [row["id"] for row in cur.fetchall()]


@dataclass(frozen=True)
class OverHorizon:
    """A return that has waited longer than its shop's horizon, with why it waits."""

    return_id: int
    order_id: int
    shop_domain: str
    order_gid: str | None
    waiting_horizon_s: int
    reason: str
    category: Category | None  # why it waited (the error inbox keeps it when the wait ends)


def over_horizon(now: datetime, limit: int, return_id: int | None = None) -> list[OverHorizon]:
    """Returns parked (their events waiting, none newly accepted) for longer than their shop's
    horizon, the longest-waiting first; ``return_id`` asks about one return only. The reason is
    the waiting events' detail (what the run parked them with), else the return's."""
    with transaction() as cur:
        cur.execute(
            """
            SELECT r.id, r.order_id, s.domain, o.order_gid, s.waiting_horizon_s, r.category,
                   COALESCE((SELECT e.detail FROM events e WHERE e.return_id = r.id AND e.status = 'waiting'
                             ORDER BY e.id DESC LIMIT 1), r.detail, 'waiting') AS reason
            FROM returns r JOIN shops s ON s.id = r.shop_id JOIN orders o ON o.id = r.order_id
            WHERE r.sync = 'waiting'
              AND r.waiting_since < %(now)s - make_interval(secs => s.waiting_horizon_s)
              AND EXISTS (SELECT 1 FROM events e WHERE e.return_id = r.id AND e.status = 'waiting')
              AND NOT EXISTS (SELECT 1 FROM events e WHERE e.return_id = r.id AND e.status = 'accepted')
              AND (%(one)s::bigint IS NULL OR r.id = %(one)s)
            ORDER BY r.waiting_since, r.id
            LIMIT %(limit)s
            """,
            {"now": now, "one": return_id, "limit": limit},
        )
        return [
            OverHorizon(
                return_id=row["id"],
                order_id=row["order_id"],
                shop_domain=row["domain"],
                order_gid=row["order_gid"],
                waiting_horizon_s=row["waiting_horizon_s"],
                reason=row["reason"],
                category=Category(row["category"]) if row["category"] else None,
            )
            for row in cur.fetchall()
        ]


@dataclass(frozen=True)
class DriftCandidate:
    return_id: int
    order_id: int
    shop_id: int


# Returns whose work is done as far as the sync knows: what was applied can be compared.
_SETTLED = (SyncState.SYNCED, SyncState.CONFLICT)


def drift_candidates(now: datetime, window_s: float, recheck_s: float, limit: int) -> list[DriftCandidate]:
    """Returns changed within ``window_s`` with something applied on Shopify and no open work,
    not compared since their last change nor within ``recheck_s``; never compared first."""
    with transaction() as cur:
        cur.execute(
            """
            SELECT r.id, r.order_id, r.shop_id FROM returns r JOIN shops s ON s.id = r.shop_id
            WHERE r.updated_at >= %(now)s - make_interval(secs => %(window)s)
              AND r.sync = ANY(%(settled)s)
              AND r.shopify_return_gid IS NOT NULL AND r.applied_state IS NOT NULL
              AND s.status = 'active'
              AND (r.drift_checked_at IS NULL OR r.drift_checked_at < r.updated_at
                   OR r.drift_checked_at < %(now)s - make_interval(secs => %(recheck)s))
              AND NOT EXISTS (SELECT 1 FROM events e WHERE e.return_id = r.id AND e.status = ANY(%(open)s))
            ORDER BY r.drift_checked_at NULLS FIRST, r.id
            LIMIT %(limit)s
            """,
            {
                "now": now,
                "window": window_s,
                "recheck": recheck_s,
                "settled": list(_SETTLED),
                "open": _OPEN,
                "limit": limit,
            },
        )
        return [DriftCandidate(row["id"], row["order_id"], row["shop_id"]) for row in cur.fetchall()]


def has_open_events(return_id: int) -> bool:
    with transaction() as cur:
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM events WHERE return_id = %s AND status = ANY(%s)) AS open",
            (return_id, _OPEN),
        )
        row = cur.fetchone()
    return bool(row and row["open"])


def reset_for_drift_repair(
    cur: Any,
    order_id: int,
    return_id: int,
    *,
    detail: str,
    redecorate: bool = False,
    renote: bool = False,
    forget_mapping: bool = False,
) -> int:
    """Inside the caller's fenced transaction: the return's applied, superseded and conflict
    events back to accepted (unrung, so the relay rings the order) and the return pending with
    ``detail``, so the next run plans it again from Shopify's live state. ``redecorate``: a
    completed return forgets it was decorated (the planner then decorates it again);
    ``renote``: the exchange note is appended again; ``forget_mapping``: the Shopify return is
    forgotten (the run adopts a matching one or creates it). Returns how many events were reset."""
    cur.execute(
        """
        UPDATE events SET status = 'accepted', detail = NULL, finished_at = NULL, enqueued_at = NULL
        WHERE return_id = %s AND status IN ('applied', 'superseded', 'conflict')
        """,
        (return_id,),
    )
    reset = int(cur.rowcount)
    if reset:
        outbox.notify(cur)
    cur.execute(
        """
        UPDATE returns SET sync = 'pending', detail = %(detail)s, waiting_since = NULL, failures = 0,
            applied_state = CASE WHEN %(forget)s OR (%(redecorate)s AND applied_state = 'completed') THEN NULL
                                 ELSE applied_state END,
            note_appended = CASE WHEN %(renote)s OR %(forget)s THEN false ELSE note_appended END,
            shopify_return_gid = CASE WHEN %(forget)s THEN NULL ELSE shopify_return_gid END,
            shopify_status = CASE WHEN %(forget)s THEN NULL ELSE shopify_status END,
            updated_at = now()
        WHERE id = %(id)s
        """,
        {
            "detail": detail,
            "forget": forget_mapping,
            "redecorate": redecorate,
            "renote": renote,
            "id": return_id,
        },
    )
    cur.execute("UPDATE orders SET next_run_at = NULL WHERE id = %s", (order_id,))
    return reset


def mark_drift_conflict(cur: Any, return_id: int, detail: str, shopify_status: ShopifyStatus | None) -> None:
    """Inside the caller's fenced transaction: the return is a conflict Shopify decided (changed
    there in a way the sync never undoes); its events keep their statuses."""
    cur.execute(
        """
        UPDATE returns SET sync = 'conflict', detail = %s, shopify_status = COALESCE(%s, shopify_status),
            category = 'drift', updated_at = now()
        WHERE id = %s
        """,
        (detail, shopify_status, return_id),
    )


def mark_drift_checked(cur: Any, return_id: int) -> None:
    """The drift check's cursor; ``updated_at`` stays what the sync last changed."""
    cur.execute("UPDATE returns SET drift_checked_at = now() WHERE id = %s", (return_id,))
