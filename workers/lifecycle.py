"""The return lifecycle as a pure function: which state to reach and how to get there on Shopify.

Events arrive in any order, duplicated and late (PRODUCT.md §4), and each carries the full snapshot
of the return at ``occurred_at``. So the plan never depends on arrival order: it looks at the set
of distinct events of one return, the state our database says was last applied, and the status
Shopify reports now, and decides

- the **target**: the furthest lifecycle state seen (requested < created < completed | cancelled);
- which event's snapshot drives the writes (the latest event of the target state);
- the ordered **steps** that bring the Shopify return from its current status to the target;
- each event's **outcome**: applied (its snapshot is the one written), superseded (a further or
  later event of the same state covers it) or conflict (completed vs cancelled: kept, not applied).

Conflict rule (completed and cancelled both present): a terminal state Shopify already shows wins
(it cannot be undone: a closed return cannot be cancelled, a cancelled one cannot be closed); else
the terminal state we already applied wins; else the terminal event that happened first
(``occurred_at``, tie broken by event id) wins, because the later one contradicts a return that was
already over. The losing events are marked ``conflict`` and shown to operators.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

REQUESTED, CREATED, COMPLETED, CANCELLED = "requested", "created", "completed", "cancelled"
STATES: tuple[str, ...] = (REQUESTED, CREATED, COMPLETED, CANCELLED)
TERMINAL = frozenset({COMPLETED, CANCELLED})
RANK: dict[str, int] = {REQUESTED: 0, CREATED: 1, COMPLETED: 2, CANCELLED: 2}

# Shopify Return.status -> the lifecycle state it stands for.
SHOPIFY_STATE: dict[str, str] = {
    "REQUESTED": REQUESTED,
    "OPEN": CREATED,
    "CLOSED": COMPLETED,
    "DECLINED": CANCELLED,
    "CANCELED": CANCELLED,
}

# Steps, in the vocabulary of the Shopify mutations they stand for.
REQUEST = "request"  # returnRequest
CREATE = "create"  # returnCreate
APPROVE = "approve"  # returnApproveRequest
DECORATE = "decorate"  # tracking on the reverse delivery, refund-method tag, exchange note
CLOSE = "close"  # returnClose
DECLINE = "decline"  # returnDeclineRequest
CANCEL = "cancel"  # returnCancel
UNTAG = "untag"  # tagsRemove of the refund-method tag

APPLIED, SUPERSEDED, CONFLICT = "applied", "superseded", "conflict"


def state_of_type(event_type: str) -> str:
    """'return.created' -> 'created'."""
    state = event_type.removeprefix("return.")
    if state not in RANK:
        raise ValueError(f"unknown event type {event_type!r}")
    return state


@dataclass(frozen=True)
class EventView:
    """What the plan needs of one event. ``snapshot`` rides along but plays no part in equality."""

    event_id: str
    state: str
    occurred_at: datetime
    snapshot: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return (self.occurred_at, self.event_id)


@dataclass(frozen=True)
class Plan:
    target: str | None  # None: no events
    snapshot_event_id: str | None  # the event whose snapshot drives the writes
    steps: tuple[str, ...]
    outcomes: Mapping[str, str]  # event_id -> applied | superseded | conflict
    conflict_detail: str | None = None

    @property
    def has_conflict(self) -> bool:
        return self.conflict_detail is not None


def _dedupe(events: Iterable[EventView]) -> list[EventView]:
    """One view per event id (redeliveries share the id), in a fixed order."""
    by_id: dict[str, EventView] = {}
    for event in events:
        by_id.setdefault(event.event_id, event)
    return sorted(by_id.values(), key=lambda e: e.sort_key)


def _terminal_winner(
    events: list[EventView], applied_state: str | None, shopify_state: str | None
) -> tuple[str, str | None]:
    """Resolve completed vs cancelled. Returns (winning state, why it won)."""
    if shopify_state in TERMINAL:
        return shopify_state, f"Shopify already shows the return {shopify_state}"
    if applied_state in TERMINAL:
        return applied_state, f"{applied_state} was already applied"
    first = min((e for e in events if e.state in TERMINAL), key=lambda e: e.sort_key)
    return first.state, f"{first.state} happened first ({first.event_id})"


def steps_between(current: str | None, target: str, applied_state: str | None) -> tuple[str, ...]:
    """Shopify mutations that bring a return from ``current`` (its lifecycle state on Shopify,
    None = no return there) to ``target``. Never backwards: a further state on Shopify wins."""
    decorated = applied_state is not None and RANK[applied_state] >= RANK[CREATED]
    if target == REQUESTED:
        return (REQUEST,) if current is None else ()
    if target == CREATED:
        if current is None:
            return (CREATE, DECORATE)
        if current == REQUESTED:
            return (APPROVE, DECORATE)
        # Re-run the idempotent decorations while created is the target: a later created event
        # may carry the tracking number, and a crash between create and tag must heal.
        return (DECORATE,) if current == CREATED else ()
    if target == COMPLETED:
        if current is None:
            return (CREATE, DECORATE, CLOSE)
        if current == REQUESTED:
            return (APPROVE, DECORATE, CLOSE)
        if current == CREATED:
            return ((DECORATE,) if not decorated else ()) + (CLOSE,)
        if current == COMPLETED:
            return () if decorated else (DECORATE,)
        return ()  # cancelled on Shopify: a conflict, resolved by the caller
    # target == CANCELLED
    if current is None:
        return ()  # nothing was ever on Shopify: nothing to undo
    if current == REQUESTED:
        return (DECLINE, UNTAG)
    if current == CREATED:
        return (CANCEL, UNTAG)
    if current == CANCELLED and applied_state != CANCELLED:
        # Cancelled on Shopify but we never recorded it (a crash after the mutation, or staff
        # cancelled it): the tag may still be there, and removing it is idempotent.
        return (UNTAG,)
    return ()


def plan(events: Iterable[EventView], applied_state: str | None, shopify_status: str | None) -> Plan:
    """Decide target, snapshot, Shopify steps and per-event outcomes for one return."""
    distinct = _dedupe(events)
    shopify_state = SHOPIFY_STATE.get(shopify_status) if shopify_status else None
    if not distinct:
        return Plan(None, None, (), {})

    states = {e.state for e in distinct}
    conflict_detail: str | None = None
    losing: str | None = None
    if TERMINAL <= states or (shopify_state in TERMINAL and states & TERMINAL - {shopify_state}):
        winner, why = _terminal_winner(distinct, applied_state, shopify_state)
        losing = CANCELLED if winner == COMPLETED else COMPLETED
        conflict_detail = f"both completed and cancelled arrived; kept {winner}: {why}"
        target = winner
    else:
        target = max(states, key=lambda s: RANK[s])

    of_target = [e for e in distinct if e.state == target]
    snapshot = of_target[-1] if of_target else None

    outcomes: dict[str, str] = {}
    for event in distinct:
        if event.state == losing:
            outcomes[event.event_id] = CONFLICT
        elif snapshot is not None and event.event_id == snapshot.event_id:
            outcomes[event.event_id] = APPLIED
        else:
            outcomes[event.event_id] = SUPERSEDED

    # Without an event of the target state (Shopify decided it) there is no snapshot to write.
    steps = steps_between(shopify_state, target, applied_state) if snapshot is not None else ()
    if shopify_state is not None and RANK[shopify_state] > RANK[target]:
        # Shopify is already past the target (e.g. a stale requested after created): the
        # target's event changed nothing, so it is superseded rather than applied.
        if snapshot is not None:
            outcomes[snapshot.event_id] = SUPERSEDED
    return Plan(target, snapshot.event_id if snapshot else None, steps, outcomes, conflict_detail)
