"""The state one apply run shares between its steps: who holds the order, and what Shopify holds.

``OrderRun`` is the order-wide part (shop, fencing token, API, the live order as last read);
``ReturnRun`` is one return being brought in line, with its plan and its Shopify counterpart as
the steps change it. Both are mutable on purpose and live for one run only: every value they
carry is frozen and replaced (``dataclasses.replace``) as the run learns more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from config import Settings
from workers.events import EventReturn, ReturnEvent
from workers.lifecycle import Plan
from workers.locking import OrderLock
from workers.shopify.api import Mutation, ShopifyAPI, UserErrors
from workers.shopify.models import LiveOrder, ShopifyReturn, order_from_json, order_to_json
from workers.statuses import Category, ReturnState, ShopifyStatus, SyncState
from workers.store import returns as store
from workers.store import snapshots
from workers.store.returns import OrderRow, ReturnRow, StoredEvent
from workers.store.shops import Shop

NOT_FULFILLED = "order not fulfilled yet"
T = TypeVar("T")


class OrderWait(Exception):
    """The whole order waits: the shop needs a reinstall, or Shopify does not know the order.
    ``horizon``: the wait ends in ``failed`` after the shop's waiting horizon."""

    def __init__(self, detail: str, category: Category, *, horizon: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.category = category
        self.horizon = horizon


class Parked(Exception):
    """One return waits (its order is not fulfilled yet): tried again at the next waiting retry."""

    def __init__(
        self, detail: str, category: Category = Category.ORDER_NOT_FULFILLED, *, horizon: bool = True
    ):
        super().__init__(detail)
        self.detail = detail
        self.category = category
        self.horizon = horizon


class Refused(Exception):
    """One return ends here for good: rejected by Shopify, a conflict, or failed."""

    def __init__(self, sync: SyncState, detail: str, category: Category) -> None:
        super().__init__(detail)
        self.sync = sync
        self.detail = detail
        self.category = category


@dataclass
class OrderRun:
    settings: Settings
    shop: Shop
    order: OrderRow
    lock: OrderLock
    api: ShopifyAPI
    now: datetime
    order_gid: str | None
    live_order: LiveOrder | None = None
    # Whether live_order was read from Shopify by this run (not handed over by the run before):
    # what is returnable and the order note are only trusted then.
    fresh: bool = False
    # The return the run is on, for the call log (``shopify_calls.return_id``).
    current_return_id: int | None = None
    # Mutations waiting to go out together (``later``), each with what to do with its result.
    pending: list[tuple[Mutation[Any], Callable[[Any], None]]] = field(default_factory=list)
    # What this run's mutations left each return's status at on Shopify (row id -> status),
    # written with the return's outcome (``workers.apply.outcomes``), whatever that is.
    seen_statuses: dict[int, ShopifyStatus] = field(default_factory=dict)

    @property
    def token(self) -> int:
        return self.lock.token

    @property
    def live(self) -> LiveOrder:
        assert self.live_order is not None, "the live order is read before any return is applied"
        return self.live_order

    def refresh(self) -> LiveOrder:
        """Read the order from Shopify again (after a lost answer, a conflict, a shortfall)."""
        assert self.order_gid is not None
        live = self.api.order(self.order_gid)
        if live is None:
            raise OrderWait(
                f"order {self.order_gid} not found on Shopify", Category.ORDER_NOT_FOUND, horizon=True
            )
        self.live_order, self.fresh = live, True
        return live

    def load_live(self) -> LiveOrder:
        """The order as the run before this one left it, if that run saw every answer and nobody
        held the order since (``workers.store.snapshots``); else read from Shopify."""
        kept = snapshots.trusted(self.order.id, self.token)
        if kept is not None:
            live = order_from_json(kept)
            if live.gid == self.order_gid:
                self.live_order, self.fresh = live, False
                return live
        return self.refresh()

    def keep_snapshot(self, sure: bool, *, next_run_at: datetime | None) -> None:
        """End of the run: hand what it knows to the next run, or (not sure) make it read; and
        say when the order is due again."""
        sure = sure and self.live_order is not None and self.api.client.unknown_outcomes == 0
        snapshot = order_to_json(self.live) if sure else None
        snapshots.save(self.order.id, self.token, snapshot, next_run_at=next_run_at)

    # -- mutations ------------------------------------------------------------------------------

    def later(self, mutation: Mutation[T], done: Callable[[T], None]) -> None:
        """Send ``mutation`` with the others at the next ``flush``; ``done`` gets its result."""
        self.pending.append((mutation, done))

    def send_now(self, mutation: Mutation[T]) -> T:
        """Send ``mutation`` now (its result is needed to go on), after whatever waits."""
        self.flush()
        return self.api.run(mutation)

    def flush(self) -> None:
        """Send what waits in one document. Each mutation's result is taken in; the first one
        answered with userErrors is raised after that (the others did happen)."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        results = self.api.together([mutation for mutation, _ in pending])
        refused: UserErrors | None = None
        for (_, done), result in zip(pending, results, strict=True):
            if isinstance(result, UserErrors):
                refused = refused or result
            else:
                done(result)
        if refused is not None:
            raise refused

    def discard(self) -> None:
        """Forget what waits (the return ended before sending it: nothing of it happened)."""
        self.pending = []

    def map_return(
        self, row: ReturnRow, shopify_return: ShopifyReturn, applied_state: ReturnState | None = None
    ) -> ReturnRow:
        """Record the Shopify return behind a platform return; returns the row as it now stands.

        What a retry must find is written at once: a new Shopify return (so it is not created a
        second time) or a state reached. A status change alone (an approval, tracking added) is
        written with the return's outcome at the end of the run, one round trip fewer per
        mutation: if the run dies first, the next holder re-reads Shopify anyway (the fence
        moved, so the snapshot is not trusted) and plans from what is there."""
        if row.shopify_return_gid != shopify_return.gid or applied_state is not None:
            store.set_mapping(
                self.order.id,
                self.token,
                row.id,
                shopify_return_gid=shopify_return.gid,
                shopify_status=shopify_return.status,
                applied_state=applied_state,
            )
        self.seen_statuses[row.id] = shopify_return.status
        self.live_order = self.live.with_return(shopify_return)
        return replace(
            row,
            shopify_return_gid=shopify_return.gid,
            shopify_status=shopify_return.status,
            applied_state=applied_state or row.applied_state,
        )


@dataclass
class ReturnRun:
    run: OrderRun
    row: ReturnRow
    events: tuple[StoredEvent, ...]
    plan: Plan
    # The driving event's return snapshot (what the steps write); None when Shopify decided.
    event_return: EventReturn | None
    current: ShopifyReturn | None

    @property
    def return_events(self) -> list[ReturnEvent]:
        return [stored.event for stored in self.events]

    def map(self, shopify_return: ShopifyReturn, applied_state: ReturnState | None = None) -> None:
        self.row = self.run.map_return(self.row, shopify_return, applied_state)
        self.current = shopify_return
