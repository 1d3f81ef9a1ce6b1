"""Tasks of the return sync. Each is thin: ids in, a plain function of ``workers`` does the work.

Names are stable (they are the wire format in Redis and what Flower shows): ``returns.apply_order``,
``returns.sweep``, ``returns.replay``.
"""

from __future__ import annotations

import logging

from config import get_settings
from tasks.app import app
from tasks.base import ReturnsTask
from tasks.periodic import recorded
from workers import apply, doorbell, repair
from workers import sweep as sweeping
from workers.retry import run_policy
from workers.statuses import RunOutcome

log = logging.getLogger(__name__)
_settings = get_settings()


@app.task(name=doorbell.APPLY_ORDER, base=ReturnsTask, bind=True, retry_policy=None)
def apply_order(self: ReturnsTask, order_id: int) -> str:
    """Apply an order's open events to Shopify, then tell the dispatcher when it comes back.

    A come-back is a due time in the dispatcher, not a Celery countdown: it is handed out when due,
    ahead of any backlog. Waiting work (fulfilment, a reinstall) is not scheduled here: the sweep
    rings the order at orders.next_run_at, however long that is.
    """
    doorbell.alive(order_id)  # the message may have waited: its place in the dispatcher stays
    try:
        result = apply.apply_order(
            order_id, worker=self.request.hostname, alive=lambda: doorbell.alive(order_id)
        )
    except Exception as exc:
        # Postgres away (nothing could be recorded): back after the run policy's first wait.
        delay = run_policy(_settings).decide(exc, attempt=1).delay_s
        log.warning("order %s: run not recorded (%s); back in %.1fs", order_id, type(exc).__name__, delay)
        doorbell.finished(order_id, again_in_s=delay)
        raise
    again = (result.delay_s or 0.0) if result.outcome.comes_back else None
    pause = result.delay_s if result.outcome is RunOutcome.THROTTLED else None
    doorbell.finished(order_id, again, pause_shop_s=pause)
    return str(result.outcome)


@app.task(name="returns.sweep", base=ReturnsTask, retry_policy=None)
def sweep() -> int:
    """Beat: ring the doorbell of every order whose work is due (Postgres is the truth)."""
    return recorded("returns.sweep", lambda: sweeping.sweep(doorbell.ring))


@app.task(name="returns.replay", base=ReturnsTask)
def replay(order_id: int) -> int:
    """Operator: put an order's failed and waiting events back to accepted and apply them."""
    return repair.replay(order_id)
