"""Apply an order's open return events to Shopify: the plain function behind ``returns.apply_order``.

One run, under the order's lock (``workers.locking``):

1. check the shop's token (scopes read on first contact; a shop that needs a reinstall waits);
2. resolve the Shopify Order GID (by name if the events only named it) and lock on it too;
3. read the order as Shopify has it now (tags, note, every return with its lines);
4. for each return with open events, in the order its first event happened: plan with
   ``workers.lifecycle`` against the *live* Shopify status, then send the steps. Before any
   create/request, an unmapped return first tries to adopt a Shopify return with the same lines
   that no other platform return owns: create mutations are not idempotent, so an earlier run
   whose answer was lost must be found, never repeated;
5. write the outcome: return sync state + event statuses (fenced), the attempt row, and when
   waiting work is due again (``orders.next_run_at``, which the sweep reads).

Shop-wide trouble (throttling, Shopify unreachable, token refused) stops the run and leaves the
unfinished returns for later; trouble with one return (waiting for fulfilment, rejected, conflict)
is recorded on that return and the run goes on with the next.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from config import Settings, get_settings
from workers import lifecycle, mapping
from workers.lifecycle import EventView, Plan
from workers.locking import LostLock, OrderLock, order_key, try_lock_order
from workers.retry import apply_policy
from workers.shopify.api import (
    ALREADY_RETURNED_MESSAGE,
    OrderSnapshot,
    ReturnItem,
    ShopifyAPI,
    ShopifyReturn,
    Shortfall,
    UserErrors,
    plan_return_lines,
)
from workers.shopify.client import (
    AccessDenied,
    CallRecord,
    OutcomeUnknown,
    ShopifyClient,
    ShopifyGraphQLError,
    ShopifyHTTPError,
    ShopifyUnavailable,
    Throttled,
    Unauthorized,
)
from workers.store import returns as store
from workers.store.calls import record_call
from workers.store.returns import ReturnRow
from workers.store.shops import REQUIRED_SCOPES, Shop, get_shop, record_scopes

log = logging.getLogger(__name__)

# Shopify statuses of a return that still holds its items (a declined/cancelled one gave them back).
_LIVE_SHOPIFY = frozenset({"REQUESTED", "OPEN", "CLOSED"})
NOT_FULFILLED = "order not fulfilled yet"


@dataclass(frozen=True)
class ApplyOutcome:
    """What one run achieved, and what the task should do next.

    kind: applied | waiting | retry | busy | failed | lost_lock | idle | missing.
    ``retry`` and ``busy`` carry the delay the task re-schedules with; ``waiting`` is re-rung by the
    sweep at ``orders.next_run_at``; the rest need nothing more.
    """

    kind: str
    delay_s: float | None = None
    detail: str | None = None
    # For a retry: "throttled" (the shop's budget; not a failure, never dead-lettered) or
    # "unavailable" (counts towards the retry policy's max attempts).
    cause: str | None = None


class _Wait(Exception):
    """The whole order waits (shop needs a reinstall, order unknown on Shopify)."""

    def __init__(self, detail: str, *, horizon: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.horizon = horizon


class _RetryLater(Exception):
    """A create whose outcome is unknown and whose result could not be found yet."""


def apply_order(order_id: int, *, worker: str | None = None) -> ApplyOutcome:
    """Bring Shopify in line with the order's events. Never raises for Shopify trouble."""
    settings = get_settings()
    order = store.load_order(order_id)
    if order is None:
        return ApplyOutcome("missing", detail=f"no order {order_id}")
    shop = get_shop(order.shop_id)
    lock = try_lock_order(order_key(shop.domain, order.order_gid, order.id), order.id)
    if lock is None:
        return ApplyOutcome(
            "busy", delay_s=settings.order_lock_retry_s, detail="order locked by another worker"
        )
    with lock:
        attempt_id = store.start_attempt(order_id, worker)
        try:
            outcome = _Run(settings, shop, order, lock).run()
        except LostLock as exc:
            # Another worker took the order over; it re-reads Shopify, so nothing is lost.
            log.warning("order %s: lost the lock mid-run: %s", order_id, exc)
            outcome = ApplyOutcome("lost_lock", detail=str(exc))
        except BaseException as exc:
            # Soft time limit, database down...: record the attempt, let the task decide.
            store.finish_attempt(attempt_id, "error", f"{type(exc).__name__}: {exc}"[:1000])
            raise
        store.finish_attempt(attempt_id, _attempt_outcome(outcome), outcome.detail)
    return outcome


def _attempt_outcome(outcome: ApplyOutcome) -> str:
    # store.consecutive_failures counts "retry" rows only: throttling must not dead-letter.
    return "throttled" if outcome.cause == "throttled" else outcome.kind


class _Run:
    def __init__(self, settings: Settings, shop: Shop, order: store.OrderRow, lock: OrderLock) -> None:
        self.settings = settings
        self.shop = shop
        self.order = order
        self.lock = lock
        self.token = lock.token
        self.now: datetime = store.db_now()
        self.current_return_id: int | None = None
        self.api = ShopifyAPI(ShopifyClient(shop, on_call=self._record, before_mutation=lock.check))
        self.order_gid: str | None = order.order_gid
        self.snapshot: OrderSnapshot | None = None
        self.finished: set[int] = set()
        self.results: dict[int, str] = {}

    # -- bookkeeping ----------------------------------------------------------------------------

    def _record(self, record: CallRecord) -> None:
        record_call(self.shop.id, self.order.id, self.current_return_id, record)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> ApplyOutcome:
        returns = store.open_returns(self.order.id)
        if not returns:
            store.set_next_run_at(self.order.id, self.token, None)
            return ApplyOutcome("idle", detail="no open events")
        try:
            self._check_scopes()
            if not self._resolve_order():
                return ApplyOutcome(
                    "busy",
                    delay_s=self.settings.order_lock_retry_s,
                    detail="the Shopify order is locked by another worker",
                )
            for ret in returns:
                self.current_return_id = ret.id
                self._apply_return(ret)
                self.finished.add(ret.id)
            self.current_return_id = None
        except _Wait as wait:
            for ret in self._unfinished(returns):
                self._wait(ret, wait.detail, horizon=wait.horizon)
        except Throttled as exc:
            delay = max(exc.retry_after_s or 1.0, 1.0)
            detail = f"waiting for the shop's API budget (throttled by Shopify; retry in {delay:.0f}s)"
            for ret in self._unfinished(returns):
                store.finish_return(
                    self.order.id,
                    self.token,
                    ret.id,
                    sync="waiting",
                    detail=detail,
                    event_statuses={},
                    waiting_since=self.now,
                    count_attempt=False,
                )
            store.set_next_run_at(self.order.id, self.token, self.now + timedelta(seconds=delay))
            return ApplyOutcome("retry", delay_s=delay, detail=detail, cause="throttled")
        except (AccessDenied, Unauthorized) as exc:
            detail = self._needs_reinstall(exc)
            for ret in self._unfinished(returns):
                self._wait(ret, detail, horizon=False)
        except (ShopifyUnavailable, ShopifyHTTPError, _RetryLater) as exc:
            return self._unavailable(returns, exc)
        return self._summarise()

    def _unfinished(self, returns: Sequence[ReturnRow]) -> list[ReturnRow]:
        return [ret for ret in returns if ret.id not in self.finished]

    def _summarise(self) -> ApplyOutcome:
        waiting = [rid for rid, result in self.results.items() if result == "waiting"]
        next_run = self.now + timedelta(seconds=self.settings.waiting_retry_s) if waiting else None
        store.set_next_run_at(self.order.id, self.token, next_run)
        counts: dict[str, int] = {}
        for result in self.results.values():
            counts[result] = counts.get(result, 0) + 1
        detail = ", ".join(f"{n} {result}" for result, n in sorted(counts.items())) or None
        return ApplyOutcome("waiting" if waiting else "applied", detail=detail)

    # -- shop and order ---------------------------------------------------------------------------

    def _check_scopes(self) -> None:
        """Read the token's scopes on first contact, and again while the shop needs a reinstall
        (so granting the scopes to the same token heals it without re-registering)."""
        if self.shop.granted_scopes is not None and not self.shop.needs_reinstall:
            return
        missing = record_scopes(self.shop.id, self.api.access_scopes())
        if missing:
            raise _Wait(_reinstall_detail(missing), horizon=False)

    def _needs_reinstall(self, exc: AccessDenied | Unauthorized) -> str:
        """Mark the shop as needing a reinstall, with the scopes it lacks."""
        try:
            granted = self.api.access_scopes()
            if isinstance(exc, AccessDenied):
                # The call was refused for these scopes, whatever the installation says.
                granted = [scope for scope in granted if scope not in exc.required_scopes]
        except (AccessDenied, Unauthorized, ShopifyUnavailable, ShopifyGraphQLError, ShopifyHTTPError):
            granted = []  # the token itself is refused: every scope is missing
        missing = record_scopes(self.shop.id, granted) or REQUIRED_SCOPES
        detail = _reinstall_detail(missing)
        if isinstance(exc, Unauthorized):
            detail += f" (Shopify refused the access token, HTTP {exc.http_status})"
        return detail

    def _resolve_order(self) -> bool:
        """Find the Order GID (by name when the events gave none) and take its lock as well.
        False when another worker holds the GID's lock (it works on the same Shopify order)."""
        if self.order_gid is None:
            name = self.order.order_name or self.order.order_ref
            found = self.api.find_order_gid(name)
            if found is None:
                raise _Wait(f"order {name} not found on Shopify", horizon=True)
            store.set_order_gid(self.order.id, self.token, found)
            self.order_gid = found
        if not self.lock.try_add(order_key(self.shop.domain, self.order_gid, self.order.id)):
            return False
        self._refresh()
        return True

    def _refresh(self) -> OrderSnapshot:
        assert self.order_gid is not None
        snapshot = self.api.order(self.order_gid)
        if snapshot is None:
            raise _Wait(f"order {self.order_gid} not found on Shopify", horizon=True)
        self.snapshot = snapshot
        return snapshot

    # -- one return ------------------------------------------------------------------------------

    def _apply_return(self, ret: ReturnRow) -> None:
        views = [
            EventView(e.event_id, lifecycle.state_of_type(e.type), e.occurred_at, e.snapshot)
            for e in ret.events
        ]
        attempts = 0
        while True:
            attempts += 1
            current = self._current_return(ret)
            plan = lifecycle.plan(views, ret.applied_state, current.status if current else None)
            try:
                self._execute(ret, plan, current, views)
            except UserErrors as exc:
                if exc.kind == "conflict" and attempts == 1:
                    # Shopify's state moved under us (staff, or an earlier lost answer): re-read
                    # and re-plan once from what is really there.
                    log.info("return %s: %s; re-reading and re-planning", ret.platform_return_id, exc)
                    self._refresh()
                    continue
                self._user_error(ret, exc)
            except ShopifyGraphQLError as exc:
                self._finish(ret, "failed", f"Shopify refused the request: {exc}", status="failed")
            return

    def _current_return(self, ret: ReturnRow) -> ShopifyReturn | None:
        """The return's Shopify counterpart as it is now, adopting one an earlier run created."""
        assert self.snapshot is not None
        if ret.shopify_return_gid:
            for candidate in self.snapshot.returns:
                if candidate.gid == ret.shopify_return_gid:
                    return candidate
            return self.api.return_details(ret.shopify_return_gid)
        adopted = self._adoptable(ret)
        if adopted is not None:
            log.info("return %s: adopting Shopify return %s", ret.platform_return_id, adopted.gid)
            self._map(ret, adopted)
        return adopted

    def _adoptable(self, ret: ReturnRow) -> ShopifyReturn | None:
        """A live Shopify return of the order with exactly our lines that no other platform
        return owns: what an earlier run created before its answer was lost."""
        assert self.snapshot is not None
        wanted = _wanted_quantities(ret)
        if not wanted:
            return None
        owned = store.mapped_gids(self.shop.id)
        for candidate in self.snapshot.returns:
            if candidate.status not in _LIVE_SHOPIFY or owned.get(candidate.gid, ret.id) != ret.id:
                continue
            if candidate.quantities_by_line_item() == wanted:
                return candidate
        return None

    def _map(self, ret: ReturnRow, shopify_return: ShopifyReturn, applied_state: str | None = None) -> None:
        store.set_mapping(
            self.order.id,
            self.token,
            ret.id,
            shopify_return_gid=shopify_return.gid,
            shopify_status=shopify_return.status,
            applied_state=applied_state,
        )
        ret.shopify_return_gid = shopify_return.gid
        ret.shopify_status = shopify_return.status
        if applied_state:
            ret.applied_state = applied_state
        assert self.snapshot is not None
        others = [r for r in self.snapshot.returns if r.gid != shopify_return.gid]
        self.snapshot = _with_returns(self.snapshot, [*others, shopify_return])

    def _execute(
        self, ret: ReturnRow, plan: Plan, current: ShopifyReturn | None, views: Sequence[EventView]
    ) -> None:
        snapshot = _snapshot_of(plan, views)
        for step in plan.steps:
            if step == lifecycle.REQUEST:
                current = self._create(ret, snapshot, request=True)
                if current is None:
                    return
            elif step == lifecycle.CREATE:
                current = self._create(ret, snapshot, request=False)
                if current is None:
                    return
            elif step == lifecycle.APPROVE:
                current = self._mutate_return(ret, self.api.approve_request, current)
            elif step == lifecycle.DECORATE:
                assert current is not None
                current = self._decorate(ret, snapshot, current)
            elif step == lifecycle.CLOSE:
                current = self._mutate_return(ret, self.api.close, current)
            elif step == lifecycle.DECLINE:
                current = self._mutate_return(ret, self.api.decline_request, current)
            elif step == lifecycle.CANCEL:
                current = self._mutate_return(ret, self.api.cancel, current)
            elif step == lifecycle.UNTAG:
                self._untag(ret, views)
        if current is not None:
            applied: str | None = lifecycle.SHOPIFY_STATE.get(current.status)
        else:
            applied = lifecycle.CANCELLED if plan.target == lifecycle.CANCELLED else None
        if applied and applied != ret.applied_state:
            store.set_applied_state(self.order.id, self.token, ret.id, applied)
            ret.applied_state = applied
        event_statuses: dict[int, tuple[str, str | None]] = {}
        for event in ret.open_events:
            outcome = plan.outcomes.get(event.event_id, lifecycle.SUPERSEDED)
            event_statuses[event.id] = (
                outcome,
                plan.conflict_detail if outcome == lifecycle.CONFLICT else None,
            )
        sync = "conflict" if plan.has_conflict else "synced"
        store.finish_return(
            self.order.id,
            self.token,
            ret.id,
            sync=sync,
            detail=plan.conflict_detail,
            event_statuses=event_statuses,
        )
        self.results[ret.id] = sync

    def _mutate_return(self, ret: ReturnRow, mutation: Any, current: ShopifyReturn | None) -> ShopifyReturn:
        # Approve/close/decline/cancel are state transitions: after an unknown outcome the next
        # run re-reads the status and plans from there, so OutcomeUnknown is simply a retry.
        assert current is not None
        updated: ShopifyReturn = mutation(current.gid)
        self._map(ret, updated)
        return updated

    def _create(self, ret: ReturnRow, snapshot: Mapping[str, Any], *, request: bool) -> ShopifyReturn | None:
        """returnRequest / returnCreate, never blind: ``_current_return`` already adopted any
        matching return; after an unknown outcome we re-read and adopt, or come back later."""
        assert self.order_gid is not None and self.snapshot is not None
        items = self._return_items(snapshot)
        planned = plan_return_lines(items, self.api.returnable_lines(self.order_gid))
        if isinstance(planned, Shortfall):
            # The items may be held by a return that appeared after our snapshot (a worker that
            # lost its lock mid-create, or a lost answer): look again before waiting or rejecting.
            self._refresh()
            adopted = self._adoptable(ret)
            if adopted is None:
                self._shortfall(ret, planned)
                return None
            log.info("return %s: adopting %s found on re-read", ret.platform_return_id, adopted.gid)
            self._map(ret, adopted)
            return adopted
        try:
            created = (self.api.return_request if request else self.api.return_create)(
                self.order_gid, planned
            )
        except OutcomeUnknown:
            self._refresh()
            adopted = self._adoptable(ret)
            if adopted is None:
                raise _RetryLater(
                    f"{'returnRequest' if request else 'returnCreate'} outcome unknown and no such return "
                    "on Shopify yet"
                ) from None
            created = adopted
        self._map(ret, created, applied_state=lifecycle.REQUESTED if request else None)
        return created

    def _return_items(self, snapshot: Mapping[str, Any]) -> list[ReturnItem]:
        items: list[ReturnItem] = []
        for item in snapshot.get("items") or []:
            handle = mapping.reason_handle(item.get("reason_id"), self.shop.reason_overrides)
            items.append(
                ReturnItem(
                    line_item_gid=mapping.normalise_line_item_gid(item["line_item_id"]),
                    quantity=int(item["quantity"]),
                    reason_definition_gid=self.api.reason_definition_id(handle),
                    reason_note=mapping.reason_note(item, self.shop.tag_language),
                    customer_note=item.get("customer_note"),
                )
            )
        return items

    def _shortfall(self, ret: ReturnRow, shortfall: Shortfall) -> None:
        """Not enough returnable quantity: not fulfilled yet (wait) or already returned (reject)."""
        assert self.snapshot is not None
        unfulfilled = []
        for item in shortfall.items:
            quantity, unfulfilled_qty = self.snapshot.line_items.get(item.line_item_gid, (0, 0))
            if quantity - unfulfilled_qty < item.requested:
                unfulfilled.append(item)
        if unfulfilled:
            self._wait(ret, NOT_FULFILLED, horizon=True)
            return
        parts = ", ".join(
            f"{i.line_item_gid}: {i.requested} asked, {i.returnable} returnable" for i in shortfall.items
        )
        self._finish(
            ret,
            "rejected",
            f"rejected by Shopify, item already returned ({ALREADY_RETURNED_MESSAGE}; {parts})",
            status="rejected",
        )

    def _decorate(self, ret: ReturnRow, snapshot: Mapping[str, Any], current: ShopifyReturn) -> ShopifyReturn:
        """Tracking on the reverse delivery, refund-method tag, exchange note: each checked against
        Shopify first, so a replay adds nothing twice."""
        assert self.order_gid is not None and self.snapshot is not None
        tracking = snapshot.get("tracking") or {}
        number = tracking.get("number")
        if (
            number
            and current.status == "OPEN"
            and number not in current.tracking_numbers
            and current.reverse_fulfillment_order_gids
        ):
            self.api.add_tracking(current.reverse_fulfillment_order_gids[0], number, tracking.get("url"))
            current = _with_tracking(current, number)
            self._map(ret, current)
        method = snapshot.get("refund_method")
        if method:
            tag = mapping.refund_tag(method, self.shop.tag_language)
            if tag.lower() not in {t.lower() for t in self.snapshot.tags}:
                tags = self.api.tags_add(self.order_gid, [tag])
                self.snapshot = _with_order(self.snapshot, tags=tags or [*self.snapshot.tags, tag])
        exchange_note = snapshot.get("exchange_note")
        if method == "exchange" and exchange_note and not ret.note_appended:
            note = mapping.append_exchange_note(self.snapshot.note, ret.platform_return_id, exchange_note)
            if note is not None:
                self.api.set_note(self.order_gid, note)
                self.snapshot = _with_order(self.snapshot, note=note)
            store.set_note_appended(self.order.id, self.token, ret.id)
            ret.note_appended = True
        return current

    def _untag(self, ret: ReturnRow, views: Sequence[EventView]) -> None:
        """Remove the refund-method tag unless another live return of the order carries it."""
        assert self.order_gid is not None and self.snapshot is not None
        methods = [v.snapshot.get("refund_method") for v in sorted(views, key=lambda v: v.sort_key)]
        method = next((m for m in reversed(methods) if m), None)
        if not method or method in store.live_refund_methods(self.order.id, ret.id):
            return
        tag = mapping.refund_tag(method, self.shop.tag_language)
        if tag.lower() in {t.lower() for t in self.snapshot.tags}:
            tags = self.api.tags_remove(self.order_gid, [tag])
            self.snapshot = _with_order(self.snapshot, tags=tags)

    # -- outcomes --------------------------------------------------------------------------------

    def _user_error(self, ret: ReturnRow, exc: UserErrors) -> None:
        message = "; ".join(exc.messages)
        if exc.kind == "waiting":
            self._wait(ret, NOT_FULFILLED, horizon=True)
        elif exc.kind == "rejected":
            reason = "item already returned: " if ALREADY_RETURNED_MESSAGE in exc.messages else ""
            self._finish(ret, "rejected", f"rejected by Shopify, {reason}{message}", status="rejected")
        elif exc.kind == "conflict":
            self._finish(
                ret, "conflict", f"Shopify's return is in another state: {message}", status="conflict"
            )
        else:
            self._finish(ret, "failed", f"Shopify refused {exc.operation}: {message}", status="failed")

    def _finish(self, ret: ReturnRow, sync: str, detail: str, *, status: str) -> None:
        store.finish_return(
            self.order.id,
            self.token,
            ret.id,
            sync=sync,
            detail=detail,
            event_statuses={e.id: (status, detail) for e in ret.open_events},
        )
        self.results[ret.id] = sync

    def _wait(self, ret: ReturnRow, detail: str, *, horizon: bool) -> None:
        """Wait and come back (the sweep re-rings at next_run_at), until the shop's horizon."""
        since = ret.waiting_since or self.now
        if horizon and (self.now - since).total_seconds() > self.shop.waiting_horizon_s:
            days = self.shop.waiting_horizon_s / 86400
            self._finish(
                ret, "failed", f"{detail} after waiting {days:g} days (replay to try again)", status="failed"
            )
            return
        store.finish_return(
            self.order.id,
            self.token,
            ret.id,
            sync="waiting",
            detail=detail,
            event_statuses={e.id: ("waiting", detail) for e in ret.open_events},
            waiting_since=self.now,
        )
        self.results[ret.id] = "waiting"

    def _unavailable(self, returns: Sequence[ReturnRow], exc: Exception) -> ApplyOutcome:
        """Shopify unreachable: back off by the retry policy, or dead-letter after the last try."""
        policy = apply_policy(self.settings)
        attempt = store.consecutive_failures(self.order.id) + 1
        reason = f"Shopify unavailable: {exc}"
        unfinished = self._unfinished(returns)
        if not policy.should_retry(attempt):
            detail = policy.dead_letter_detail(attempt, reason)
            for ret in unfinished:
                self._finish(ret, "failed", detail, status="failed")
            store.set_next_run_at(self.order.id, self.token, None)
            return ApplyOutcome("failed", detail=detail)
        delay = policy.delay(attempt)
        detail = f"{reason}; retry {attempt} of {policy.max_attempts - 1} in {delay:.0f}s"
        for ret in unfinished:
            store.finish_return(
                self.order.id, self.token, ret.id, sync="pending", detail=detail, event_statuses={}
            )
        store.set_next_run_at(self.order.id, self.token, self.now + timedelta(seconds=delay))
        return ApplyOutcome("retry", delay_s=delay, detail=detail, cause="unavailable")


# --- helpers ---------------------------------------------------------------------------------------


def _reinstall_detail(missing: Sequence[str]) -> str:
    return f"shop needs reinstall: missing scopes {', '.join(missing)}"


# Fields INGEST.md makes optional on completed/cancelled events: when the driving snapshot lacks
# one, the latest event of the return that has it supplies it (e.g. completed arrives first, without
# refund_method, and the return is created from it).
_CARRIED_FIELDS = ("refund_method", "tracking", "exchange_note")


def _snapshot_of(plan: Plan, views: Sequence[EventView]) -> Mapping[str, Any]:
    chosen = next((v.snapshot for v in views if v.event_id == plan.snapshot_event_id), None)
    if chosen is None:
        return {}
    merged = dict(chosen)
    for name in _CARRIED_FIELDS:
        if merged.get(name):
            continue
        for view in sorted(views, key=lambda v: v.sort_key, reverse=True):
            if view.snapshot.get(name):
                merged[name] = view.snapshot[name]
                break
    return merged


def _wanted_quantities(ret: ReturnRow) -> dict[str, int]:
    """Line item -> quantity of the return's latest snapshot (all snapshots of one return list the
    same items; the latest is the one that counts if they ever differ)."""
    if not ret.events:
        return {}
    latest = max(ret.events, key=lambda e: (e.occurred_at, e.event_id))
    totals: dict[str, int] = {}
    for item in latest.snapshot.get("items") or []:
        gid = mapping.normalise_line_item_gid(item["line_item_id"])
        totals[gid] = totals.get(gid, 0) + int(item["quantity"])
    return totals


def _with_returns(snapshot: OrderSnapshot, returns: list[ShopifyReturn]) -> OrderSnapshot:
    return OrderSnapshot(
        snapshot.gid, snapshot.name, snapshot.tags, snapshot.note, snapshot.line_items, returns
    )


def _with_order(
    snapshot: OrderSnapshot, *, tags: list[str] | None = None, note: str | None = None
) -> OrderSnapshot:
    return OrderSnapshot(
        snapshot.gid,
        snapshot.name,
        list(tags) if tags is not None else snapshot.tags,
        note if note is not None else snapshot.note,
        snapshot.line_items,
        snapshot.returns,
    )


def _with_tracking(current: ShopifyReturn, number: str) -> ShopifyReturn:
    return ShopifyReturn(
        current.gid,
        current.name,
        current.status,
        current.lines,
        current.reverse_fulfillment_order_gids,
        [*current.tracking_numbers, number],
    )
