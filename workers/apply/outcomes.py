"""How a return's run ends, written to Postgres: synced, waiting, refused, or a failed attempt.

Every function writes the return's sync state and its open events in one fenced transaction
(``store.finish_return``) and says what the run should do about the return next (``ReturnResult``).
A failed attempt goes through the one retry policy (``workers.retry.run_policy``): counted in
``returns.failures``, retried with backoff, and dead-lettered as ``failed`` with the exception's
class and message once the policy's attempts are spent. Nothing stays pending without a reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from workers.apply.context import OrderRun, ReturnRun
from workers.events import InvalidEvent
from workers.retry import Verdict, run_policy
from workers.shopify.errors import ShopifyGraphQLError, ShopifyUnavailable
from workers.statuses import Category, EventStatus, ReturnState, ShopifyStatus, SyncState
from workers.store import returns as store
from workers.store.returns import LoadedReturn, ReturnRow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReturnResult:
    sync: SyncState
    retry_in_s: float | None = None  # a counted failed attempt: back after this
    budget_wait_s: float | None = None  # the shop's API budget: back after this, not counted
    dead_lettered: bool = False  # the retry policy gave up on it in this run


_FINAL_EVENT_STATUS = {
    SyncState.REJECTED: EventStatus.REJECTED,
    SyncState.CONFLICT: EventStatus.CONFLICT,
    SyncState.FAILED: EventStatus.FAILED,
}


def _status(run: OrderRun, return_id: int, seen: ShopifyStatus | None = None) -> ShopifyStatus | None:
    """The return's status on Shopify for its outcome: what the caller saw, else what this run's
    mutations left it at (``OrderRun.map_return`` defers writing that to the outcome)."""
    return seen if seen is not None else run.seen_statuses.get(return_id)


def synced(rr: ReturnRun) -> ReturnResult:
    """Every step of the plan done: events get the plan's outcomes, the return what it reached."""
    plan = rr.plan
    current = rr.current
    if current is not None:
        applied: ReturnState | None = current.status.state
    else:
        applied = ReturnState.CANCELLED if plan.target == ReturnState.CANCELLED else None
    statuses: dict[int, tuple[EventStatus, str | None]] = {}
    for stored in rr.events:
        if not stored.is_open:
            continue
        outcome = plan.outcomes.get(stored.event.id, EventStatus.SUPERSEDED)
        statuses[stored.row_id] = (outcome, plan.conflict_detail if outcome == EventStatus.CONFLICT else None)
    sync = SyncState.CONFLICT if plan.has_conflict else SyncState.SYNCED
    store.finish_return(
        rr.run.order.id,
        rr.run.token,
        rr.row.id,
        sync=sync,
        detail=plan.conflict_detail,
        event_statuses=statuses,
        applied_state=applied,
        shopify_status=_status(rr.run, rr.row.id, current.status if current is not None else None),
        category=Category.CONFLICT if plan.has_conflict else None,
    )
    return ReturnResult(sync)


def refused(
    run: OrderRun,
    return_id: int,
    sync: SyncState,
    detail: str,
    category: Category,
    *,
    reset_failures: bool = True,
    shopify_status: ShopifyStatus | None = None,
) -> ReturnResult:
    """Final: rejected by Shopify, a conflict, or failed for good; the open events say the same.
    ``shopify_status``: what Shopify showed for the return in this run, if it was read."""
    status = _FINAL_EVENT_STATUS[sync]
    store.finish_return(
        run.order.id,
        run.token,
        return_id,
        sync=sync,
        detail=detail,
        all_open=(status, detail),
        reset_failures=reset_failures,
        shopify_status=_status(run, return_id, shopify_status),
        category=category,
    )
    return ReturnResult(sync)


def parked(
    run: OrderRun,
    row: ReturnRow,
    detail: str,
    category: Category,
    *,
    horizon: bool,
    shopify_status: ShopifyStatus | None = None,
) -> ReturnResult:
    """Wait and come back (the sweep re-rings at ``next_run_at``); past the shop's horizon the
    wait ends as failed (an operator can replay it)."""
    since = row.waiting_since or run.now
    if horizon and (run.now - since).total_seconds() > run.shop.waiting_horizon_s:
        days = run.shop.waiting_horizon_s / 86400
        detail = f"{detail} after waiting {days:g} days (replay to try again)"
        return refused(run, row.id, SyncState.FAILED, detail, category, shopify_status=shopify_status)
    store.finish_return(
        run.order.id,
        run.token,
        row.id,
        sync=SyncState.WAITING,
        detail=detail,
        all_open=(EventStatus.WAITING, detail),
        waiting_since=run.now,
        shopify_status=_status(run, row.id, shopify_status),
        category=category,
    )
    return ReturnResult(SyncState.WAITING)


def budget_wait(run: OrderRun, return_id: int, delay_s: float) -> ReturnResult:
    """The shop's API budget ran out: not a failure, nothing counted, back when it has refilled."""
    detail = f"waiting for the shop's API budget (throttled by Shopify; retry in {delay_s:.0f}s)"
    store.finish_return(
        run.order.id,
        run.token,
        return_id,
        sync=SyncState.WAITING,
        detail=detail,
        waiting_since=run.now,
        reset_failures=False,
        shopify_status=_status(run, return_id),
        category=Category.BUDGET,
    )
    return ReturnResult(SyncState.WAITING, budget_wait_s=delay_s)


def category_of(exc: BaseException) -> Category:
    """The inbox category of a failed attempt."""
    if isinstance(exc, InvalidEvent):
        return Category.INVALID_EVENT
    if isinstance(exc, ShopifyUnavailable):
        return Category.SHOPIFY_UNAVAILABLE
    if isinstance(exc, ShopifyGraphQLError):
        return Category.REJECTED
    return Category.INTERNAL_ERROR


def failed_attempt(run: OrderRun, return_id: int, exc: BaseException) -> ReturnResult:
    """One more failed attempt of the return, decided by the run policy: pending with the reason
    and when it comes back, or dead-lettered as failed."""
    policy = run_policy(run.settings)
    attempt = store.count_failure(run.order.id, run.token, return_id)
    decision = policy.decide(exc, attempt)
    category = category_of(exc)
    if decision.verdict is Verdict.GIVE_UP:
        log.warning("return row %s: dead-lettered after %d attempts: %s", return_id, attempt, decision.reason)
        # The count stays (how many attempts it took); a replay starts it again.
        refused(
            run,
            return_id,
            SyncState.FAILED,
            policy.dead_letter_detail(decision),
            category,
            reset_failures=False,
        )
        return ReturnResult(SyncState.FAILED, dead_lettered=True)
    detail = policy.retry_detail(decision)
    log.info("return row %s: attempt %d failed: %s", return_id, attempt, decision.reason)
    store.finish_return(
        run.order.id,
        run.token,
        return_id,
        sync=SyncState.PENDING,
        detail=detail,
        reset_failures=False,
        shopify_status=_status(run, return_id),
        category=category,
    )
    return ReturnResult(SyncState.PENDING, retry_in_s=decision.delay_s)


def fail_unreadable(run: OrderRun, loaded: LoadedReturn) -> None:
    """Events whose stored body no longer validates are dead-lettered at once (the policy calls
    ``InvalidEvent`` permanent: no retry can fix a body); the return's other events go on."""
    policy = run_policy(run.settings)
    for bad in loaded.unreadable:
        if not bad.status.is_open:
            continue
        decision = policy.decide(bad.error, 1)
        detail = f"event {bad.event_id}: {policy.dead_letter_detail(decision)}"
        store.finish_return(
            run.order.id,
            run.token,
            loaded.row.id,
            sync=SyncState.FAILED if not loaded.events else loaded.row.sync,
            detail=detail,
            event_statuses={bad.row_id: (EventStatus.FAILED, detail)},
            reset_failures=False,
            shopify_status=_status(run, loaded.row.id),
            category=Category.INVALID_EVENT,
        )
