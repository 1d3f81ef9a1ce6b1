"""The return lifecycle as a pure function: which state to reach and how to get there on Shopify.

Events arrive in any order, duplicated and late (PRODUCT.md §4), and each carries the full snapshot
of the return at ``occurred_at``. So the plan never depends on arrival order: it looks at the set
of distinct events of one return, the state our database says was last applied, and the status
Shopify reports now, and decides

- the **target**: the furthest lifecycle state seen (requested < created < completed | cancelled);
- which event's return snapshot drives the writes (the latest event of the target state);
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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from workers.events import EventReturn, ReturnEvent
from workers.statuses import EventStatus, ReturnState, ShopifyStatus, Step

REQUESTED, CREATED, COMPLETED, CANCELLED = (
    ReturnState.REQUESTED,
    ReturnState.CREATED,
    ReturnState.COMPLETED,
    ReturnState.CANCELLED,
)
TERMINAL = frozenset({COMPLETED, CANCELLED})


class PlannedEvent(Protocol):
    """What the plan needs of an event (``workers.events.ReturnEvent`` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> ReturnState: ...

    @property
    def sort_key(self) -> tuple[datetime, str]: ...


@dataclass(frozen=True)
class Plan:
    target: ReturnState | None  # None: no events
    driving_event_id: str | None  # the event whose return snapshot drives the writes
    steps: tuple[Step, ...]
    outcomes: Mapping[str, EventStatus]  # event id -> applied | superseded | conflict
    conflict_detail: str | None = None

    @property
    def has_conflict(self) -> bool:
        return self.conflict_detail is not None


def _dedupe(events: Iterable[PlannedEvent]) -> list[PlannedEvent]:
    """One event per id (redeliveries share the id), in a fixed order."""
    by_id: dict[str, PlannedEvent] = {}
    for event in events:
        by_id.setdefault(event.id, event)
    return sorted(by_id.values(), key=lambda e: e.sort_key)


def _terminal_winner(
    events: list[PlannedEvent], applied_state: ReturnState | None, shopify_state: ReturnState | None
) -> tuple[ReturnState, str]:
    """Resolve completed vs cancelled. Returns (winning state, why it won)."""
    if shopify_state in TERMINAL:
        return shopify_state, f"Shopify already shows the return {shopify_state}"
    if applied_state in TERMINAL:
        return applied_state, f"{applied_state} was already applied"
    first = min((e for e in events if e.state in TERMINAL), key=lambda e: e.sort_key)
    return first.state, f"{first.state} happened first ({first.id})"


REQUEST, CREATE, APPROVE, DECORATE = Step.REQUEST, Step.CREATE, Step.APPROVE, Step.DECORATE
CLOSE, DECLINE, CANCEL, UNTAG = Step.CLOSE, Step.DECLINE, Step.CANCEL, Step.UNTAG


def steps_between(
    current: ReturnState | None, target: ReturnState, applied_state: ReturnState | None
) -> tuple[Step, ...]:
    """Shopify mutations that bring a return from ``current`` (its lifecycle state on Shopify,
    None = no return there) to ``target``. Never backwards: a further state on Shopify wins."""
    decorated = applied_state is not None and applied_state.rank >= CREATED.rank
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


def plan(
    events: Iterable[PlannedEvent], applied_state: ReturnState | None, shopify_status: ShopifyStatus | None
) -> Plan:
    """Decide target, driving event, Shopify steps and per-event outcomes for one return."""
    distinct = _dedupe(events)
    shopify_state = shopify_status.state if shopify_status else None
    if not distinct:
        return Plan(None, None, (), {})

    states = {e.state for e in distinct}
    conflict_detail: str | None = None
    losing: ReturnState | None = None
    if TERMINAL <= states or (shopify_state in TERMINAL and states & TERMINAL - {shopify_state}):
        winner, why = _terminal_winner(distinct, applied_state, shopify_state)
        losing = CANCELLED if winner == COMPLETED else COMPLETED
        conflict_detail = f"both completed and cancelled arrived; kept {winner}: {why}"
        target = winner
    else:
        target = max(states, key=lambda s: s.rank)

    of_target = [e for e in distinct if e.state == target]
    driving = of_target[-1] if of_target else None

    outcomes: dict[str, EventStatus] = {}
    for event in distinct:
        if event.state == losing:
            outcomes[event.id] = EventStatus.CONFLICT
        elif driving is not None and event.id == driving.id:
            outcomes[event.id] = EventStatus.APPLIED
        else:
            outcomes[event.id] = EventStatus.SUPERSEDED

    # Without an event of the target state (Shopify decided it) there is no snapshot to write.
    steps = steps_between(shopify_state, target, applied_state) if driving is not None else ()
    if shopify_state is not None and shopify_state.rank > target.rank:
        # Shopify is already past the target (e.g. a stale requested after created): the
        # target's event changed nothing, so it is superseded rather than applied.
        if driving is not None:
            outcomes[driving.id] = EventStatus.SUPERSEDED
    return Plan(target, driving.id if driving else None, steps, outcomes, conflict_detail)


def driving_return(plan: Plan, events: Sequence[ReturnEvent]) -> EventReturn | None:
    """The return snapshot the plan writes: the driving event's, with the fields INGEST.md makes
    optional on completed/cancelled filled in from the latest event that has them (e.g. completed
    arrives first, without refund_method, and the return is created from it)."""
    driving = next((e.event_return for e in events if e.id == plan.driving_event_id), None)
    if driving is None:
        return None
    latest_first = [e.event_return for e in sorted(events, key=lambda e: e.sort_key, reverse=True)]
    return replace(
        driving,
        refund_method=driving.refund_method
        or next((r.refund_method for r in latest_first if r.refund_method), None),
        tracking=driving.tracking or next((r.tracking for r in latest_first if r.tracking), None),
        exchange_note=driving.exchange_note
        or next((r.exchange_note for r in latest_first if r.exchange_note), None),
    )
