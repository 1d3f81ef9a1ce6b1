"""One apply run of an order, the plain function behind the task ``returns.apply_order``.

Under the order's lock (``workers.locking``):

1. check the shop's token (scopes read on first contact; a shop that needs a reinstall waits);
2. resolve the Shopify Order GID (by name if the events only named it) and lock on it too;
3. read the order as Shopify has it now (tags, note, every return with its lines);
4. for each return with open events, in the order its first event happened, load it on its own
   and bring it in line (``workers.apply.returns``);
5. write the outcome: each return's sync state and events (fenced), the attempt row, and when the
   order is due again (``orders.next_run_at``, which the sweep reads).

Trouble with one return (waiting for fulfilment, rejected, conflict, or any exception while
loading, planning or applying it) is that return's alone: the run goes on with the next. Shop-wide
trouble (throttling, Shopify unreachable, a token refused) stops the run and leaves the unfinished
returns for later. Every failure is decided by the one retry policy and counted in Postgres, so an
order can never be retried forever without saying why: after the last attempt the return is
``failed`` with the exception's class and message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from celery.exceptions import SoftTimeLimitExceeded

from config import get_settings
from workers import metrics
from workers.access import AccessLost, ShopTokens, check_installed, lost_detail
from workers.apply import outcomes
from workers.apply.context import OrderRun, OrderWait
from workers.apply.outcomes import ReturnResult
from workers.apply.returns import apply_return
from workers.budget import gate_for
from workers.locking import OrderLock, order_key, try_lock_order
from workers.retry import OrderBusy
from workers.shopify.api import ShopifyAPI
from workers.shopify.client import Endpoint, ShopifyClient
from workers.shopify.errors import (
    AccessDenied,
    CostTooHigh,
    ShopifyError,
    ShopifyUnavailable,
    Throttled,
    Unauthorized,
)
from workers.statuses import Category, RunOutcome, SyncState
from workers.store import calls, snapshots
from workers.store import returns as store
from workers.store.db import DatabaseUnavailable
from workers.store.fencing import LostLock
from workers.store.shops import REQUIRED_SCOPES, Shop, get_shop, mark_needs_reinstall, record_scopes

log = logging.getLogger(__name__)

# Stop the whole run: they are about the shop, the order or the process, not one return.
_STOPS_THE_RUN = (
    AccessLost,
    Throttled,
    ShopifyUnavailable,
    AccessDenied,
    CostTooHigh,
    Unauthorized,
    OrderWait,
    OrderBusy,
    LostLock,
    SoftTimeLimitExceeded,
    *DatabaseUnavailable,
)


@dataclass(frozen=True)
class RunResult:
    """What one run achieved; ``delay_s`` is when the task comes back (``outcome.comes_back``)."""

    outcome: RunOutcome
    delay_s: float | None = None
    detail: str | None = None


def endpoint_of(shop: Shop) -> Endpoint:
    return Endpoint(shop.domain, shop.graphql_url, ShopTokens(shop))


def apply_order(
    order_id: int, *, worker: str | None = None, alive: Callable[[], None] | None = None
) -> RunResult:
    """Bring Shopify in line with the order's open events. Raises only when Postgres is away.
    ``alive`` is told each time the run renews its lease (the dispatcher keeps its place)."""
    settings = get_settings()
    order = store.load_order(order_id)
    if order is None:
        return RunResult(RunOutcome.MISSING, detail=f"no order {order_id}")
    shop = get_shop(order.shop_id)
    lock = try_lock_order(order_key(shop.domain, order.order_gid, order.id), order.id, on_renew=alive)
    if lock is None:
        metrics.lock_busy()
        return RunResult(RunOutcome.BUSY, settings.order_lock_retry_s, "order locked by another worker")
    with lock:
        attempt_id, started_at = store.start_attempt(order_id, worker)
        try:
            result = _OrderRunner(_order_run(shop, order, lock, started_at)).execute()
        except LostLock as exc:
            # Another worker took the order over; it re-reads Shopify, so nothing is lost.
            log.warning("order %s: lost the lock mid-run: %s", order_id, exc)
            result = RunResult(RunOutcome.LOST_LOCK, detail=str(exc))
        except BaseException as exc:
            # Postgres away (nothing could be recorded), or the process is stopping.
            _finish_attempt_quietly(attempt_id, exc)
            raise
        store.finish_attempt(attempt_id, result.outcome, result.detail)
    return result


def _order_run(shop: Shop, order: store.OrderRow, lock: OrderLock, now: datetime) -> OrderRun:
    run = OrderRun(
        settings=get_settings(),
        shop=shop,
        order=order,
        lock=lock,
        api=ShopifyAPI(ShopifyClient(endpoint_of(shop), before_send=lock.guard, meter=gate_for(shop.domain))),
        now=now,
        order_gid=order.order_gid,
    )
    run.api.client.on_call = lambda record: calls.record_call(
        shop.id, order.id, run.current_return_id, record
    )
    return run


def _finish_attempt_quietly(attempt_id: int, exc: BaseException) -> None:
    try:
        store.finish_attempt(attempt_id, RunOutcome.RETRY, f"{type(exc).__name__}: {exc}"[:1000])
    except Exception:  # Postgres is the likely cause of exc itself
        log.warning("attempt %s not recorded (%s)", attempt_id, type(exc).__name__)


class _OrderRunner:
    def __init__(self, run: OrderRun) -> None:
        self.run = run
        self.results: dict[int, ReturnResult] = {}
        self.sure = False

    def execute(self) -> RunResult:
        run = self.run
        return_ids = store.open_return_ids(run.order.id)
        if not return_ids:
            snapshots.carry(run.order.id, run.token, next_run_at=None)
            return RunResult(RunOutcome.IDLE, detail="no open events")
        # Whether the run ends knowing what Shopify holds: every return went through its steps,
        # or the budget stopped it before a request went out.
        self.sure = False
        try:
            self._prepare()
            for return_id in return_ids:
                self.results[return_id] = self._apply_one(return_id)
            self.sure = True
        except OrderBusy:
            metrics.lock_busy()
            return RunResult(RunOutcome.BUSY, run.settings.order_lock_retry_s, "the Shopify order is locked")
        except (LostLock, *DatabaseUnavailable):
            raise
        except Throttled as exc:
            self.sure = run.live_order is not None
            delay = max(exc.retry_after_s or 1.0, 1.0)
            self._for_unfinished(return_ids, lambda rid: outcomes.budget_wait(run, rid, delay))
        except CostTooHigh as exc:
            detail = f"Shopify cannot serve this shop's order read, even in the smallest pages: {exc}"
            self._for_unfinished(
                return_ids,
                lambda rid: outcomes.refused(run, rid, SyncState.FAILED, detail, Category.QUERY_TOO_COSTLY),
            )
        except AccessLost as lost:
            detail, category = lost.detail, lost.category
            self._for_unfinished(return_ids, lambda rid: self._park(rid, detail, category, horizon=False))
        except (AccessDenied, Unauthorized) as exc:
            detail = self._needs_reinstall(exc)
            category = Category.MISSING_SCOPES if isinstance(exc, AccessDenied) else Category.ACCESS_REFUSED
            self._for_unfinished(return_ids, lambda rid: self._park(rid, detail, category, horizon=False))
        except OrderWait as wait:
            detail, category, horizon = wait.detail, wait.category, wait.horizon
            self._for_unfinished(return_ids, lambda rid: self._park(rid, detail, category, horizon=horizon))
        except Exception as exc:  # Shopify unavailable, the deadline, or anything unexpected
            log.warning("order %s: run stopped: %s: %s", run.order.id, type(exc).__name__, exc)
            stopped_by = exc
            self._for_unfinished(return_ids, lambda rid: outcomes.failed_attempt(run, rid, stopped_by))
        return self._summarise()

    # -- order-wide steps -------------------------------------------------------------------------

    def _prepare(self) -> None:
        run = self.run
        # An uninstalled shop, or one whose access was refused for good, is not called at all.
        check_installed(run.shop)
        self._check_scopes()
        if run.order_gid is None:
            name = run.order.order_name or run.order.order_ref
            found = run.api.find_order_gid(name)
            if found is None:
                raise OrderWait(f"order {name} not found on Shopify", Category.ORDER_NOT_FOUND, horizon=True)
            store.set_order_gid(run.order.id, run.token, found)
            run.order_gid = found
        # Two order rows (one named by id, one by name only) can be the same Shopify order.
        if not run.lock.try_add(order_key(run.shop.domain, run.order_gid, run.order.id)):
            raise OrderBusy(f"Shopify order {run.order_gid} is locked by another worker")
        run.load_live()

    def _check_scopes(self) -> None:
        """Read the token's scopes on first contact, and again while the shop needs a reinstall
        (so granting the scopes to the same token heals it without re-registering)."""
        shop = self.run.shop
        if shop.granted_scopes is not None and not shop.needs_reinstall:
            return
        missing = record_scopes(shop.id, self.run.api.access_scopes())
        if missing:
            raise OrderWait(_reinstall_detail(shop, missing), Category.MISSING_SCOPES, horizon=False)

    def _needs_reinstall(self, exc: AccessDenied | Unauthorized) -> str:
        """A refused token marks the shop as needing a reinstall; a missing scope names the scopes
        it lacks (a legacy token may be granted them in place, so it is read again next run)."""
        shop = self.run.shop
        if isinstance(exc, Unauthorized):
            why = f"Shopify refused the access token, HTTP {exc.http_status}"
            mark_needs_reinstall(shop.id, why)
            return lost_detail(shop, f"shop needs reinstall ({why})")
        try:
            # The call was refused for these scopes, whatever the installation says.
            granted = [s for s in self.run.api.access_scopes() if s not in exc.required_scopes]
        except ShopifyError:
            granted = []
        missing = record_scopes(shop.id, granted) or REQUIRED_SCOPES
        return _reinstall_detail(shop, missing)

    # -- one return -------------------------------------------------------------------------------

    def _apply_one(self, return_id: int) -> ReturnResult:
        run = self.run
        run.current_return_id = return_id
        try:
            return apply_return(run, store.load_return(return_id))
        except _STOPS_THE_RUN:
            raise
        except Exception as exc:
            # Loading, planning or applying this one return broke: its attempt fails, the others
            # go on. What it did on Shopify before breaking is seen by re-reading the order.
            log.exception("order %s, return row %s: attempt failed", run.order.id, return_id)
            result = outcomes.failed_attempt(run, return_id, exc)
            run.refresh()
            return result
        finally:
            run.current_return_id = None

    def _park(self, return_id: int, detail: str, category: Category, *, horizon: bool) -> ReturnResult:
        return outcomes.parked(self.run, store.get_return(return_id), detail, category, horizon=horizon)

    def _for_unfinished(self, return_ids: list[int], finish: Callable[[int], ReturnResult]) -> None:
        for return_id in return_ids:
            if return_id not in self.results:
                self.results[return_id] = finish(return_id)

    # -- the run's outcome ------------------------------------------------------------------------

    def _summarise(self) -> RunResult:
        run = self.run
        results = list(self.results.values())
        counts: dict[str, int] = {}
        for result in results:
            counts[result.sync] = counts.get(result.sync, 0) + 1
        detail = ", ".join(f"{n} {sync}" for sync, n in sorted(counts.items())) or None
        retries = [r.retry_in_s for r in results if r.retry_in_s is not None]
        budget = [r.budget_wait_s for r in results if r.budget_wait_s is not None]
        outcome, delay = RunOutcome.APPLIED, None
        if retries:
            outcome, delay = RunOutcome.RETRY, min(retries)
        elif budget:
            outcome, delay = RunOutcome.THROTTLED, min(budget)
        elif any(r.sync == SyncState.WAITING for r in results):
            outcome, delay = RunOutcome.WAITING, float(run.settings.waiting_retry_s)
        elif any(r.dead_lettered for r in results):
            outcome = RunOutcome.FAILED
        next_run = run.now + timedelta(seconds=delay) if delay is not None else None
        run.keep_snapshot(self.sure, next_run_at=next_run)
        return RunResult(outcome, delay if outcome.comes_back else None, detail)


def _reinstall_detail(shop: Shop, missing: tuple[str, ...] | list[str]) -> str:
    return lost_detail(shop, f"shop needs reinstall: missing scopes {', '.join(missing)}")
