"""Tasks of the return sync. Each is thin: ids in, a plain function of ``workers`` does the work.

Names are stable (they are the wire format in Redis and what Flower shows): ``returns.apply_order``,
``returns.sweep``, ``returns.replay``.
"""

from __future__ import annotations

import logging

from tasks.app import app
from tasks.base import ReturnsTask
from workers import apply, doorbell, repair
from workers import sweep as sweeping

log = logging.getLogger(__name__)


@app.task(name=doorbell.APPLY_ORDER, base=ReturnsTask, bind=True)
def apply_order(self: ReturnsTask, order_id: int) -> str:
    """Apply an order's open events to Shopify, then come back if the run says when."""
    result = apply.apply_order(order_id, worker=self.request.hostname)
    # waiting: nothing to schedule here; the sweep rings the order at orders.next_run_at, so a
    # long wait never sits in Redis as a countdown beyond the visibility timeout.
    if result.outcome.comes_back:
        self.retry_in(result.delay_s or 0.0)
    return str(result.outcome)


@app.task(name="returns.sweep", base=ReturnsTask, retry_policy=None)
def sweep() -> int:
    """Beat: ring the doorbell of every order whose work is due (Postgres is the truth)."""
    return sweeping.sweep(doorbell.ring)


@app.task(name="returns.replay", base=ReturnsTask)
def replay(order_id: int) -> int:
    """Operator: put an order's failed and waiting events back to accepted and apply them."""
    return repair.replay(order_id)
