"""One return brought in line with its events: find its Shopify counterpart, plan, run the steps.

A conflict answer from Shopify (its state moved under us: staff, or an earlier lost answer) gets
one re-read and re-plan from what is really there; anything else Shopify refuses for this return
ends the return, not the run. Shop-wide trouble (throttling, Shopify down, a token refused) is left
to travel up to ``workers.apply.run``.
"""

from __future__ import annotations

import logging

from workers import lifecycle
from workers.apply import outcomes
from workers.apply.adoption import current_return
from workers.apply.context import NOT_FULFILLED, OrderRun, Parked, Refused, ReturnRun
from workers.apply.outcomes import ReturnResult
from workers.apply.steps import STEP_HANDLERS
from workers.shopify.api import ALREADY_RETURNED_MESSAGE, UserErrors
from workers.statuses import Category, ShopifyStatus, SyncState
from workers.store.returns import LoadedReturn, ReturnRow

log = logging.getLogger(__name__)


def apply_return(run: OrderRun, loaded: LoadedReturn) -> ReturnResult:
    try:
        return _apply_return(run, loaded)
    finally:
        run.discard()  # what a return that stopped early left waiting was never sent


def _apply_return(run: OrderRun, loaded: LoadedReturn) -> ReturnResult:
    outcomes.fail_unreadable(run, loaded)
    if not loaded.events:
        return ReturnResult(SyncState.FAILED, dead_lettered=bool(loaded.unreadable))
    row = loaded.row
    for attempt in (1, 2):
        rr = _prepare(run, row, loaded)
        try:
            for step in rr.plan.steps:
                STEP_HANDLERS[step](rr)
            run.flush()  # the return's waiting mutations, in one document
        except UserErrors as exc:
            if exc.kind == "conflict" and attempt == 1:
                log.info("return %s: %s; re-reading and re-planning", row.platform_return_id, exc)
                run.refresh()
                row = rr.row
                continue
            return _user_error(rr, exc)
        except Parked as wait:
            return outcomes.parked(
                run, rr.row, wait.detail, wait.category, horizon=wait.horizon, shopify_status=_seen(rr)
            )
        except Refused as refusal:
            return outcomes.refused(
                run, rr.row.id, refusal.sync, refusal.detail, refusal.category, shopify_status=_seen(rr)
            )
        return outcomes.synced(rr)
    raise AssertionError("unreachable: the second attempt always returns")


def _prepare(run: OrderRun, row: ReturnRow, loaded: LoadedReturn) -> ReturnRun:
    row, current = current_return(run, row, loaded.events)
    events = [stored.event for stored in loaded.events]
    plan = lifecycle.plan(events, row.applied_state, current.status if current else None)
    return ReturnRun(
        run=run,
        row=row,
        events=loaded.events,
        plan=plan,
        event_return=lifecycle.driving_return(plan, events),
        current=current,
    )


def _seen(rr: ReturnRun) -> ShopifyStatus | None:
    """The return's status on Shopify as this run last saw it (for the status API)."""
    return rr.current.status if rr.current is not None else None


def _user_error(rr: ReturnRun, exc: UserErrors) -> ReturnResult:
    run, row, seen = rr.run, rr.row, _seen(rr)
    message = "; ".join(exc.messages)
    if exc.kind == "waiting":
        return outcomes.parked(
            run, row, NOT_FULFILLED, Category.ORDER_NOT_FULFILLED, horizon=True, shopify_status=seen
        )
    if exc.kind == "rejected":
        twice = ALREADY_RETURNED_MESSAGE in exc.messages
        detail = f"rejected by Shopify, {'item already returned: ' if twice else ''}{message}"
        category = Category.ITEM_ALREADY_RETURNED if twice else Category.REJECTED
        return outcomes.refused(run, row.id, SyncState.REJECTED, detail, category, shopify_status=seen)
    if exc.kind == "conflict":
        detail = f"Shopify's return is in another state: {message}"
        return outcomes.refused(
            run, row.id, SyncState.CONFLICT, detail, Category.CONFLICT, shopify_status=seen
        )
    detail = f"Shopify refused {exc.operation}: {message}"
    return outcomes.refused(run, row.id, SyncState.FAILED, detail, Category.REJECTED, shopify_status=seen)
