"""One handler per plan step (``STEP_HANDLERS``), each a few Shopify mutations checked against what
the live order already shows, so a replay adds nothing twice.

A mutation whose result the next step needs (a create, an approval: the reverse fulfilment order
the tracking goes on) is sent at once; the others (tracking, tags, note, close, cancel) wait with
``OrderRun.later`` and go out together in one document when the return's steps are done. A handler
changes ``rr.current`` (the Shopify return as it now stands) and the run's live order as results
come in; it ends a return early by raising ``Parked`` (wait) or ``Refused`` (final), and lets
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
from workers.shopify import api
from workers.shopify.api import ALREADY_RETURNED_MESSAGE, Mutation, ShopifyAPI
from workers.shopify.errors import OutcomeUnknown, ShopifyUnavailable
from workers.shopify.models import ShopifyReturn
from workers.statuses import Category, ReturnState, ShopifyStatus, Step, SyncState
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
    if not run.fresh or run.live.returnable is None:
        # A create is planned from what Shopify holds now, never from what an earlier run saw.
        run.refresh()
    assert run.live.returnable is not None
    planned = plan_return_lines(_mapped_items(run, rr.event_return), run.live.returnable)
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
    mutation = api.return_request if request else api.return_create
    try:
        created = run.send_now(mutation(run.order_gid, planned))
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
        Category.ITEM_ALREADY_RETURNED,
    )


def _transition(mutation: Callable[[ShopifyAPI, str], ShopifyReturn]) -> Callable[[ReturnRun], None]:
    """Approve/decline: state transitions sent at once (an approval's reverse fulfilment order is
    where the tracking goes); after an unknown outcome the next run re-reads the status and plans
    from there, so ``OutcomeUnknown`` is simply a retry."""

    def step(rr: ReturnRun) -> None:
        assert rr.current is not None
        rr.run.flush()
        rr.map(mutation(rr.run.api, rr.current.gid))

    return step


def _final(mutation: Callable[[str], Mutation[ShopifyReturn]]) -> Callable[[ReturnRun], None]:
    """Close/cancel: the last word on a return, sent with the return's other waiting mutations
    (after them: a return is closed once its tracking is on)."""

    def step(rr: ReturnRun) -> None:
        assert rr.current is not None
        rr.run.later(mutation(rr.current.gid), rr.map)

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
        number = tracking.number
        run.later(
            api.add_tracking(current.reverse_fulfillment_order_gids[0], number, tracking.url),
            lambda _: rr.map(
                rr.current.with_tracking(number) if rr.current else current.with_tracking(number)
            ),
        )
    method = event_return.refund_method
    note = event_return.exchange_note
    if method == RefundMethod.EXCHANGE and note and not rr.row.note_appended and not run.fresh:
        # The note is rewritten whole: from what Shopify holds now, never from an earlier view
        # (staff may have edited it since).
        run.refresh()
    if method is not None:
        tag = mapping.refund_tag(method, run.shop.tag_language)
        if not run.live.has_tag(tag):

            def tagged(tags: tuple[str, ...], tag: str = tag) -> None:
                run.live_order = replace(run.live, tags=tags or (*run.live.tags, tag))

            run.later(api.tags_add(run.order_gid, [tag]), tagged)
    if method == RefundMethod.EXCHANGE and note and not rr.row.note_appended:
        updated = mapping.append_exchange_note(run.live.note, rr.row.platform_return_id, note)
        if updated is None:
            _note_appended(rr)
        else:

            def noted(_: str | None, updated: str = updated) -> None:
                run.live_order = replace(run.live, note=updated)
                _note_appended(rr)

            run.later(api.set_note(run.order_gid, updated), noted)


def _note_appended(rr: ReturnRun) -> None:
    store.set_note_appended(rr.run.order.id, rr.run.token, rr.row.id)
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

        def untagged(tags: tuple[str, ...]) -> None:
            run.live_order = replace(run.live, tags=tags)

        run.later(api.tags_remove(run.order_gid, [tag]), untagged)


STEP_HANDLERS: Mapping[Step, Callable[[ReturnRun], None]] = {
    Step.REQUEST: _request,
    Step.CREATE: _create_open,
    Step.APPROVE: _transition(ShopifyAPI.approve_request),
    Step.DECORATE: _decorate,
    Step.CLOSE: _final(api.close),
    Step.DECLINE: _transition(ShopifyAPI.decline_request),
    Step.CANCEL: _final(api.cancel),
    Step.UNTAG: _untag,
}
