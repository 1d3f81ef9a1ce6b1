"""The sweep: Postgres is the truth, Redis the doorbell. Re-ring every order whose work is due.

If Redis lost every message (flushed, failed over, evicted), the events are still open in Postgres
and this finds them: accepted events never enqueued or enqueued longer ago than
``settings.sweep_after_s``, and waiting events whose ``next_run_at`` has come.

Waiting work (an order not fulfilled yet, a shop that needs a reinstall or uninstalled the app) is
rung on a growing schedule (``store.due_orders_backing_off``): a return that has waited an hour is
looked at after another hour, not every ``WAITING_RETRY_S``, up to one look per
``WAITING_RETRY_CAP_S``. The run still sets ``next_run_at`` as before (the shortest wait); the
backoff is decided here, from when each waiting event was last rung and how long its return has
waited, so a fulfilment webhook or a reinstall still rings at once. The wait's end (the shop's
horizon) is the beat task ``reconcile.expire_waiting`` (``workers.reconcile.horizon``).
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
    due = store.due_orders_backing_off(
        now or store.db_now(),
        settings.sweep_after_s,
        base_s=settings.waiting_retry_s,
        cap_s=settings.waiting_retry_cap_s,
    )
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
