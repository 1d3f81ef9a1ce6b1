"""One handler per plan step (``STEP_HANDLERS``), each a few Shopify calls checked against what the
live order already shows, so a replay adds nothing twice.

A handler changes ``rr.current`` (the Shopify return as it now stands) and the run's live order as
it goes; it ends a return early by raising ``Parked`` (wait) or ``Refused`` (final), and lets
Shopify's own errors (``UserErrors``, ``OutcomeUnknown``...) travel up to ``workers.apply.returns``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import replace

from workers import mapping
from workers.apply.adoption import find_adoptable
from workers.apply.context import NOT_FULFILLED, OrderRun, Parked, Refused, ReturnRun
from workers.events import EventReturn, RefundMethod
from workers.lines import MappedItem, Shortfall, plan_return_lines
from workers.shopify.api import ALREADY_RETURNED_MESSAGE, ShopifyAPI
from workers.shopify.errors import OutcomeUnknown, ShopifyUnavailable
from workers.shopify.models import ShopifyReturn
from workers.statuses import ReturnState, ShopifyStatus, Step, SyncState
from workers.store import returns as store

log = logging.getLogger(__name__)


class CreatePending(ShopifyUnavailable):
    """A create whose outcome is unknown and whose result is not on Shopify yet: a failed
    attempt; the next run re-reads the order and adopts it, or creates it then."""


def _request(rr: ReturnRun) -> None:
    _create(rr, request=True)


def _create_open(rr: ReturnRun) -> None:
    _create(rr, request=False)


def _create(rr: ReturnRun, *, request: bool) -> None:
    """returnRequest / returnCreate, never blind: ``adoption.current_return`` already adopted any
    matching return; after an unknown outcome we re-read and adopt, or come back later."""
    run = rr.run
    assert run.order_gid is not None and rr.event_return is not None
    planned = plan_return_lines(_mapped_items(run, rr.event_return), run.api.returnable_lines(run.order_gid))
    if isinstance(planned, Shortfall):
        # The items may be held by a return that appeared after our read (a worker that lost its
        # lock mid-create, or a lost answer): look again before waiting or rejecting.
        run.refresh()
        adopted = find_adoptable(run, rr.row, rr.events)
        if adopted is None:
            raise _shortfall(run, planned)
        log.info("return %s: adopting %s found on re-read", rr.row.platform_return_id, adopted.gid)
        rr.map(adopted)
        return
    mutation = run.api.return_request if request else run.api.return_create
    try:
        created = mutation(run.order_gid, planned)
    except OutcomeUnknown:
        run.refresh()
        adopted = find_adoptable(run, rr.row, rr.events)
        if adopted is None:
            name = "returnRequest" if request else "returnCreate"
            raise CreatePending(f"{name} outcome unknown and no such return on Shopify yet") from None
        created = adopted
    rr.map(created, applied_state=ReturnState.REQUESTED if request else None)


def _mapped_items(run: OrderRun, event_return: EventReturn) -> list[MappedItem]:
    items: list[MappedItem] = []
    for item in event_return.items:
        handle = mapping.reason_handle(item.reason_id, run.shop.reason_overrides)
        items.append(
            MappedItem(
                line_item_gid=item.line_item_gid,
                quantity=item.quantity,
                reason_definition_gid=run.api.reason_definition_id(handle),
                reason_note=mapping.reason_note(item, handle, run.shop.tag_language),
                customer_note=mapping.customer_note(item),
            )
        )
    return items


def _shortfall(run: OrderRun, shortfall: Shortfall) -> Parked | Refused:
    """Not enough returnable quantity: not fulfilled yet (wait) or already returned (reject)."""
    if any(run.live.fulfilled_quantity(item.line_item_gid) < item.requested for item in shortfall.items):
        return Parked(NOT_FULFILLED)
    parts = ", ".join(
        f"{i.line_item_gid}: {i.requested} asked, {i.returnable} returnable" for i in shortfall.items
    )
    return Refused(
        SyncState.REJECTED,
        f"rejected by Shopify, item already returned ({ALREADY_RETURNED_MESSAGE}; {parts})",
    )


def _transition(mutation: Callable[[ShopifyAPI, str], ShopifyReturn]) -> Callable[[ReturnRun], None]:
    """Approve/close/decline/cancel: state transitions; after an unknown outcome the next run
    re-reads the status and plans from there, so ``OutcomeUnknown`` is simply a retry."""

    def step(rr: ReturnRun) -> None:
        assert rr.current is not None
        rr.map(mutation(rr.run.api, rr.current.gid))

    return step


def _decorate(rr: ReturnRun) -> None:
    """Tracking on the reverse delivery, refund-method tag, exchange note: each checked against
    Shopify first, so a replay adds nothing twice."""
    run, current, event_return = rr.run, rr.current, rr.event_return
    assert run.order_gid is not None and current is not None and event_return is not None
    tracking = event_return.tracking
    if (
        tracking is not None
        and current.status == ShopifyStatus.OPEN
        and tracking.number not in current.tracking_numbers
        and current.reverse_fulfillment_order_gids
    ):
        run.api.add_tracking(current.reverse_fulfillment_order_gids[0], tracking.number, tracking.url)
        rr.map(current.with_tracking(tracking.number))
    method = event_return.refund_method
    if method is not None:
        tag = mapping.refund_tag(method, run.shop.tag_language)
        if not run.live.has_tag(tag):
            tags = run.api.tags_add(run.order_gid, [tag])
            run.live_order = replace(run.live, tags=tags or (*run.live.tags, tag))
    note = event_return.exchange_note
    if method == RefundMethod.EXCHANGE and note and not rr.row.note_appended:
        updated = mapping.append_exchange_note(run.live.note, rr.row.platform_return_id, note)
        if updated is not None:
            run.api.set_note(run.order_gid, updated)
            run.live_order = replace(run.live, note=updated)
        store.set_note_appended(run.order.id, run.token, rr.row.id)
        rr.row = replace(rr.row, note_appended=True)


def _untag(rr: ReturnRun) -> None:
    """Remove the refund-method tag unless another live return of the order carries it."""
    run = rr.run
    assert run.order_gid is not None
    methods = [e.event_return.refund_method for e in sorted(rr.return_events, key=lambda e: e.sort_key)]
    method = next((m for m in reversed(methods) if m), None)
    if method is None or method in store.live_refund_methods(run.order.id, rr.row.id):
        return
    tag = mapping.refund_tag(method, run.shop.tag_language)
    if run.live.has_tag(tag):
        run.live_order = replace(run.live, tags=run.api.tags_remove(run.order_gid, [tag]))


STEP_HANDLERS: Mapping[Step, Callable[[ReturnRun], None]] = {
    Step.REQUEST: _request,
    Step.CREATE: _create_open,
    Step.APPROVE: _transition(ShopifyAPI.approve_request),
    Step.DECORATE: _decorate,
    Step.CLOSE: _transition(ShopifyAPI.close),
    Step.DECLINE: _transition(ShopifyAPI.decline_request),
    Step.CANCEL: _transition(ShopifyAPI.cancel),
    Step.UNTAG: _untag,
}
