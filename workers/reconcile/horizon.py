"""The end of a wait: returns waiting beyond their shop's horizon become ``failed`` with the reason.

An apply run fails a return whose wait for fulfilment outlived the horizon when it next looks at it
(``workers.apply.outcomes.parked``); with the waiting backoff that look can be hours away, and a
wait for a reinstall (the shop needs one, or uninstalled the app) is never ended by a run at all.
This beat task ends every such wait on time, with the run's own detail format, so the status API
says the same whichever of the two ended it: ``<reason> after waiting N days (replay to try
again)``. A replay (``workers.repair``) starts the wait again.
"""

from __future__ import annotations

import logging
from datetime import datetime

from config import get_settings
from workers.locking import order_key, try_lock_order
from workers.statuses import Category, EventStatus, SyncState
from workers.store import returns as store
from workers.store.fencing import LostLock
from workers.store.returns import OverHorizon

log = logging.getLogger(__name__)


def horizon_detail(reason: str, waiting_horizon_s: int) -> str:
    """What ``workers.apply.outcomes.parked`` writes when the horizon ends a wait."""
    days = waiting_horizon_s / 86400
    return f"{reason} after waiting {days:g} days (replay to try again)"


def expire_waiting(now: datetime | None = None, limit: int | None = None) -> dict[str, int]:
    """Fail the returns (at most ``limit``) waiting beyond their shop's horizon. An order another
    worker holds is left for the next run. Returns what was found, expired and left."""
    settings = get_settings()
    now = now or store.db_now()
    found = store.over_horizon(now, limit or settings.horizon_batch)
    expired = busy = 0
    for item in found:
        lock = try_lock_order(order_key(item.shop_domain, item.order_gid, item.order_id), item.order_id)
        if lock is None:
            busy += 1
            continue
        with lock:
            try:
                expired += _expire(item.return_id, lock.token, now)
            except LostLock as exc:
                log.warning("return row %s: lost the order lock while expiring: %s", item.return_id, exc)
    if found:
        log.info("horizon: %d of %d waiting returns failed (%d orders busy)", expired, len(found), busy)
    return {"found": len(found), "expired": expired, "busy": busy}


def _expire(return_id: int, token: int, now: datetime) -> int:
    # Read again under the lock: a run that held the order a moment ago may have ended the wait.
    again: list[OverHorizon] = store.over_horizon(now, 1, return_id=return_id)
    if not again:
        return 0
    item = again[0]
    detail = horizon_detail(item.reason, item.waiting_horizon_s)
    store.finish_return(
        item.order_id,
        token,
        item.return_id,
        sync=SyncState.FAILED,
        detail=detail,
        all_open=(EventStatus.FAILED, detail),
        category=item.category or Category.ORDER_NOT_FULFILLED,
    )
    return 1
