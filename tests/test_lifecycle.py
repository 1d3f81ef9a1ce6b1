"""The lifecycle planner: target state, Shopify steps and event outcomes for one return."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers import lifecycle
from workers.events import EventItem, EventReturn, OrderRef, Origin, RefundMethod, ReturnEvent, Tracking
from workers.lifecycle import (
    APPROVE,
    CANCEL,
    CLOSE,
    CREATE,
    DECLINE,
    DECORATE,
    REQUEST,
    UNTAG,
    driving_return,
)
from workers.statuses import EventStatus, EventType, ReturnState, ShopifyStatus

APPLIED, SUPERSEDED, CONFLICT = EventStatus.APPLIED, EventStatus.SUPERSEDED, EventStatus.CONFLICT
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Ev:
    """The three things the planner reads of an event."""

    id: str
    state: ReturnState
    occurred_at: datetime

    @property
    def sort_key(self) -> tuple[datetime, str]:
        return (self.occurred_at, self.id)


def ev(event_id: str, state: str, minutes: int) -> Ev:
    return Ev(event_id, ReturnState(state), T0 + timedelta(minutes=minutes))


def plan(events, applied, shopify):
    """The planner, with statuses written as the words the tables below use."""
    return lifecycle.plan(
        events, ReturnState(applied) if applied else None, ShopifyStatus(shopify) if shopify else None
    )


REQ = ev("e1", "requested", 0)
CRE = ev("e2", "created", 5)
COM = ev("e3", "completed", 60)
CAN = ev("e4", "cancelled", 90)


def test_no_events_plans_nothing():
    result = plan([], None, None)
    assert (result.target, result.steps, dict(result.outcomes)) == (None, (), {})


@pytest.mark.parametrize(
    ("events", "shopify_status", "applied", "target", "steps"),
    [
        # One row per lifecycle transition of PRODUCT.md §2, from each Shopify status.
        ([REQ], None, None, "requested", (REQUEST,)),
        ([CRE], None, None, "created", (CREATE, DECORATE)),
        ([REQ, CRE], "REQUESTED", "requested", "created", (APPROVE, DECORATE)),
        ([CRE, COM], "OPEN", "created", "completed", (CLOSE,)),
        ([REQ, CAN], "REQUESTED", "requested", "cancelled", (DECLINE, UNTAG)),
        ([CRE, CAN], "OPEN", "created", "cancelled", (CANCEL, UNTAG)),
        # Out of order: completed before anything was on Shopify means create, then close.
        ([COM], None, None, "completed", (CREATE, DECORATE, CLOSE)),
        ([REQ, COM], "REQUESTED", "requested", "completed", (APPROVE, DECORATE, CLOSE)),
        # Cancelled with nothing on Shopify: nothing to undo.
        ([CAN], None, None, "cancelled", ()),
        # Already there: nothing more to send.
        ([CRE, COM], "CLOSED", "completed", "completed", ()),
        ([CRE, CAN], "CANCELED", "cancelled", "cancelled", ()),
        # Shopify is OPEN but the decorations were never recorded (crash after create): heal first.
        ([COM], "OPEN", None, "completed", (DECORATE, CLOSE)),
    ],
)
def test_steps_bring_shopify_from_its_status_to_the_target(events, shopify_status, applied, target, steps):
    result = plan(events, applied, shopify_status)
    assert result.target == target
    assert result.steps == steps


def test_latest_event_of_the_target_state_drives_the_writes():
    early = ev("a", "created", 5)
    late = ev("b", "created", 7)
    result = plan([late, REQ, early], None, None)
    assert result.driving_event_id == "b"
    assert result.outcomes == {"a": SUPERSEDED, "b": APPLIED, "e1": SUPERSEDED}


def test_stale_requested_after_created_changes_nothing_on_shopify():
    result = plan([CRE, REQ], "created", "OPEN")
    assert result.target == "created"
    # Only the idempotent decorations are re-checked; no request, approve or create.
    assert REQUEST not in result.steps and CREATE not in result.steps and APPROVE not in result.steps
    assert result.outcomes["e1"] == SUPERSEDED


def test_created_when_shopify_already_closed_is_superseded():
    result = plan([CRE], None, "CLOSED")
    assert result.steps == ()
    assert result.outcomes == {"e2": SUPERSEDED}


def test_cancelled_after_completed_already_applied_is_a_conflict():
    result = plan([CRE, COM, CAN], "completed", "CLOSED")
    assert result.target == "completed"
    assert result.steps == ()
    assert result.outcomes["e4"] == CONFLICT
    assert result.outcomes["e3"] == APPLIED
    assert "kept completed" in (result.conflict_detail or "")


def test_completed_and_cancelled_unapplied_the_earlier_terminal_wins():
    cancelled_first = ev("x", "cancelled", 30)
    completed_later = ev("y", "completed", 40)
    result = plan([CRE, completed_later, cancelled_first], "created", "OPEN")
    assert result.target == "cancelled"
    assert result.steps == (CANCEL, UNTAG)
    assert result.outcomes == {"e2": SUPERSEDED, "x": APPLIED, "y": CONFLICT}


def test_terminal_tie_on_time_is_broken_by_event_id():
    a = ev("a", "completed", 30)
    b = ev("b", "cancelled", 30)
    assert plan([b, a], None, None).target == "completed"


def test_shopify_terminal_state_wins_over_an_earlier_event():
    cancelled_first = ev("x", "cancelled", 30)
    completed_later = ev("y", "completed", 40)
    result = plan([cancelled_first, completed_later], "created", "CLOSED")
    assert result.target == "completed"
    assert result.outcomes["x"] == CONFLICT


def test_applied_terminal_state_wins_when_shopify_has_no_terminal_status():
    result = plan([ev("x", "cancelled", 30), ev("y", "completed", 40)], "completed", None)
    assert result.target == "completed"


def test_cancelled_alone_against_a_closed_shopify_return_is_a_conflict():
    result = plan([CAN], None, "CLOSED")
    assert result.outcomes == {"e4": CONFLICT}
    assert result.steps == ()


def test_cancelled_on_shopify_but_not_recorded_removes_the_tag():
    assert plan([CAN], "created", "CANCELED").steps == (UNTAG,)


def _event(event_id: str, kind: EventType, minutes: int, **fields) -> ReturnEvent:
    ret = EventReturn(
        id="R-1",
        order=OrderRef("gid://shopify/Order/1", None),
        origin=Origin.RETURN_PORTAL,
        items=(EventItem("gid://shopify/LineItem/1", 1, 23),),
        **fields,
    )
    return ReturnEvent(event_id, kind, T0 + timedelta(minutes=minutes), "s.myshopify.com", ret)


def test_a_completed_event_without_the_optional_fields_borrows_them_from_the_latest_event():
    # Given completed (no refund method, no tracking) and two created events that carry them
    older = _event("c1", EventType.CREATED, 0, refund_method=RefundMethod.REFUND, exchange_note="old")
    newer = _event("c2", EventType.CREATED, 5, refund_method=RefundMethod.EXCHANGE, tracking=Tracking("3S1"))
    completed = _event("d", EventType.COMPLETED, 10)
    events = [completed, older, newer]
    written = driving_return(lifecycle.plan(events, None, None), events)
    # Then the return is created from completed, with the latest value of each missing field
    assert written is not None
    assert (written.refund_method, written.tracking, written.exchange_note) == (
        RefundMethod.EXCHANGE,
        Tracking("3S1"),
        "old",
    )


def test_the_driving_events_own_fields_are_never_replaced():
    first = _event("c1", EventType.CREATED, 0, refund_method=RefundMethod.REFUND)
    later = _event("c2", EventType.CREATED, 5, refund_method=RefundMethod.STORE_CREDIT)
    written = driving_return(lifecycle.plan([first, later], None, None), [first, later])
    assert written is not None and written.refund_method == RefundMethod.STORE_CREDIT


# --- Properties: arrival order and duplication never change the plan ---------------------------

STATES = ("requested", "created", "completed", "cancelled")
SHOPIFY = (None, "REQUESTED", "OPEN", "CLOSED", "DECLINED", "CANCELED")
APPLIED_STATES = (None, "requested", "created", "completed", "cancelled")

event_sets = st.lists(
    st.builds(
        lambda i, state, minutes: ev(f"evt_{i}", state, minutes),
        st.integers(0, 6),
        st.sampled_from(STATES),
        st.integers(0, 3),  # few distinct times, so ties happen
    ),
    min_size=1,
    max_size=7,
    unique_by=lambda e: e.id,
)


@given(
    events=event_sets,
    applied=st.sampled_from(APPLIED_STATES),
    shopify=st.sampled_from(SHOPIFY),
    data=st.data(),
)
def test_any_permutation_and_duplication_gives_the_same_plan(events, applied, shopify, data):
    reference = plan(events, applied, shopify)
    shuffled = data.draw(st.permutations(events))
    duplicated = shuffled + data.draw(st.lists(st.sampled_from(events), max_size=6))
    again = plan(data.draw(st.permutations(duplicated)), applied, shopify)
    assert again == reference


@given(events=event_sets, applied=st.sampled_from(APPLIED_STATES), shopify=st.sampled_from(SHOPIFY))
def test_every_event_gets_one_outcome_and_at_most_one_is_applied(events, applied, shopify):
    result = plan(events, applied, shopify)
    assert set(result.outcomes) == {e.id for e in events}
    assert list(result.outcomes.values()).count(APPLIED) <= 1
    states = {e.state for e in events}
    # A conflict is reported exactly when both terminal states are in play.
    terminal_seen = states & {"completed", "cancelled"}
    shopify_terminal = {"CLOSED": "completed", "DECLINED": "cancelled", "CANCELED": "cancelled"}.get(shopify)
    both = len(terminal_seen) == 2 or (shopify_terminal is not None and terminal_seen - {shopify_terminal})
    assert result.has_conflict == bool(both)
    assert (CONFLICT in result.outcomes.values()) == bool(both)


@given(events=event_sets, shopify=st.sampled_from(SHOPIFY))
def test_steps_never_repeat_a_creation_when_a_shopify_return_exists(events, shopify):
    result = plan(events, None, shopify)
    if shopify is not None:
        assert CREATE not in result.steps and REQUEST not in result.steps
