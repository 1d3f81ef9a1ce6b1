"""Tasks of the return sync. Each is thin: ids in, a plain function of ``workers`` does the work."""

from __future__ import annotations

import logging

from config import get_settings
from tasks.app import app
from tasks.base import ReturnsTask
from workers import apply
from workers import sweep as sweeping
from workers.store import inbox
from workers.store import returns as store

log = logging.getLogger(__name__)


@app.task(name="returns.apply_order", base=ReturnsTask, bind=True)
def apply_order(self: ReturnsTask, order_id: int) -> str:
    """Apply an order's open events to Shopify, then decide when to come back."""
    outcome = apply.apply_order(order_id, worker=self.request.hostname)
    if outcome.kind == "busy":
        # Another worker holds the order; it will have seen our events or we run right after.
        self.retry_in(get_settings().order_lock_retry_s)
    elif outcome.kind == "retry":
        self.retry_in(outcome.delay_s or 0.0)
    # waiting: nothing to schedule here; the sweep rings the order at orders.next_run_at, so a
    # long wait never sits in Redis as a countdown beyond the visibility timeout.
    return outcome.kind


@app.task(name="returns.sweep", base=ReturnsTask)
def sweep() -> int:
    """Beat: ring the doorbell of every order whose work is due (Postgres is the truth)."""
    return sweeping.sweep(enqueue_order)


@app.task(name="returns.replay", base=ReturnsTask)
def replay(order_id: int) -> int:
    """Operator: put an order's failed and waiting events back to accepted and apply them."""
    return replay_order(order_id)


def replay_order(order_id: int) -> int:
    """Reset the order's failed and waiting events to accepted and ring its doorbell; returns how
    many events were reset. If Redis is down the sweep picks them up (enqueued_at is stale)."""
    count = store.reset_for_replay(order_id)
    enqueue_order(order_id)
    return count


def enqueue_order(order_id: int) -> bool:
    """Ring the order's doorbell. Never raises: False (and a log line) when Redis is unreachable,
    in which case the sweep rings it later because its events keep ``enqueued_at`` unset or old."""
    try:
        # retry=False: on the ingest request path a dead broker must cost one failed connect,
        # not Celery's publish-retry loop.
        apply_order.apply_async(args=(order_id,), retry=False)
    except Exception:  # kombu raises several families (OperationalError, redis errors, OSError)
        log.warning("could not enqueue order %s; the sweep will", order_id, exc_info=True)
        return False
    try:
        inbox.mark_enqueued(order_id)
    except Exception:
        # The message is out; a missing mark only means the sweep may ring it once more.
        log.warning("enqueued order %s but could not mark its events", order_id, exc_info=True)
    return True
