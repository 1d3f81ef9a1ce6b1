"""Operator repairs of an order's work. Each only changes Postgres: the reset events are unrung
outbox entries, so the relay rings the order as soon as the repair commits."""

from __future__ import annotations

from workers.store import returns as store


def replay(order_id: int) -> int:
    """Put the order's failed and waiting events back to accepted (their returns pending, with a
    fresh failure count); returns how many events were reset."""
    return store.reset_for_replay(order_id)
