"""Operator repairs of an order's work, with the doorbell rung after each."""

from __future__ import annotations

from collections.abc import Callable

from workers.store import returns as store


def replay(order_id: int, ring: Callable[[int], bool]) -> int:
    """Put the order's failed and waiting events back to accepted (their returns pending, with a
    fresh failure count) and ring its doorbell; returns how many events were reset. If Redis is
    down the sweep picks them up (their ``enqueued_at`` is old)."""
    count = store.reset_for_replay(order_id)
    ring(order_id)
    return count
