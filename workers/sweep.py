"""The sweep: Postgres is the truth, Redis the doorbell. Re-ring every order whose work is due.

If Redis lost every message (flushed, failed over, evicted), the events are still open in Postgres
and this finds them: accepted events never enqueued or enqueued longer ago than
``settings.sweep_after_s``, and waiting events whose ``next_run_at`` has come.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from config import get_settings
from workers.store import returns as store

log = logging.getLogger(__name__)


def sweep(ring: Callable[[int], bool], now: datetime | None = None) -> int:
    """Ring each due order once; return how many doorbells rang. ``now`` defaults to the
    database clock, the one every timestamp being compared was written with."""
    settings = get_settings()
    due = store.due_orders(now or store.db_now(), settings.sweep_after_s)
    rung = 0
    for order_id in due:
        if ring(order_id):
            rung += 1
        else:
            # Broker down: ringing the rest would fail the same way; the next sweep tries again.
            log.warning("sweep: broker unreachable after %d of %d orders", rung, len(due))
            break
    if due:
        log.info("sweep: rang %d of %d due orders", rung, len(due))
    return rung
