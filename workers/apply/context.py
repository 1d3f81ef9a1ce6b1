"""The state one apply run shares between its steps: who holds the order, and what Shopify holds.

``OrderRun`` is the order-wide part (shop, fencing token, API, the live order as last read);
``ReturnRun`` is one return being brought in line, with its plan and its Shopify counterpart as
the steps change it. Both are mutable on purpose and live for one run only: every value they
carry is frozen and replaced (``dataclasses.replace``) as the run learns more.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from config import Settings
from workers.events import EventReturn, ReturnEvent
from workers.lifecycle import Plan
from workers.locking import OrderLock
from workers.shopify.api import ShopifyAPI
from workers.shopify.models import LiveOrder, ShopifyReturn
from workers.statuses import ReturnState, SyncState
from workers.store import returns as store
from workers.store.returns import OrderRow, ReturnRow, StoredEvent
from workers.store.shops import Shop

NOT_FULFILLED = "order not fulfilled yet"


class OrderWait(Exception):
    """The whole order waits: the shop needs a reinstall, or Shopify does not know the order.
    ``horizon``: the wait ends in ``failed`` after the shop's waiting horizon."""

    def __init__(self, detail: str, *, horizon: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.horizon = horizon


class Parked(Exception):
    """One return waits (its order is not fulfilled yet): tried again at the next waiting retry."""

    def __init__(self, detail: str, *, horizon: bool = True) -> None:
        super().__init__(detail)
        self.detail = detail
        self.horizon = horizon


class Refused(Exception):
    """One return ends here for good: rejected by Shopify, a conflict, or failed."""

    def __init__(self, sync: SyncState, detail: str) -> None:
        super().__init__(detail)
        self.sync = sync
        self.detail = detail


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
    # The return the run is on, for the call log (``shopify_calls.return_id``).
    current_return_id: int | None = None

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
            raise OrderWait(f"order {self.order_gid} not found on Shopify", horizon=True)
        self.live_order = live
        return live

    def map_return(
        self, row: ReturnRow, shopify_return: ShopifyReturn, applied_state: ReturnState | None = None
    ) -> ReturnRow:
        """Record the Shopify return behind a platform return at once (a retry must find it
        here rather than create a second one); returns the row as it now stands."""
        store.set_mapping(
            self.order.id,
            self.token,
            row.id,
            shopify_return_gid=shopify_return.gid,
            shopify_status=shopify_return.status,
            applied_state=applied_state,
        )
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
