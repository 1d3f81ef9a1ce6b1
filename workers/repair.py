"""Operator repairs. Each only changes Postgres: the events put back are unrung outbox entries, so
the relay rings their orders as soon as the repair commits.

- *retry*: the failed step from where it stands (failed and waiting events back to work);
- *reset*: the return replayed from its stored events (every event back to work);
- for one return, an order's returns, or every return of a category in a shop.
"""

from __future__ import annotations

from workers.statuses import Category
from workers.store import returns as store


def replay(order_id: int) -> int:
    """Put the order's failed and waiting events back to accepted (their returns pending, with a
    fresh failure count); returns how many events were reset."""
    return store.reset_for_replay(order_id)


def retry(
    shop: str, *, return_id: str | None = None, order_id: int | None = None, category: Category | None = None
) -> int:
    ids = store.select_returns(shop, return_id=return_id, order_id=order_id, category=category)
    return store.repair_returns(ids, whole=False)


def reset(
    shop: str, *, return_id: str | None = None, order_id: int | None = None, category: Category | None = None
) -> int:
    ids = store.select_returns(shop, return_id=return_id, order_id=order_id, category=category)
    return store.repair_returns(ids, whole=True)
