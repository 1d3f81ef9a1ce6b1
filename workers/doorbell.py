"""The doorbell: tell the workers an order has work, by publishing ``returns.apply_order(order_id)``.

Postgres holds the work; a message in Redis only says "look at this order". Losing one costs a
delay (the beat sweep re-rings from Postgres), never an event. The message is sent by the task's
stable name through a producer-only Celery app built from the same settings as the workers'
(``config.celery``), so ingest, the sweep and the operator CLI ring the same bell without importing
the task layer.
"""

from __future__ import annotations

import logging
import os
import threading

from celery import Celery

from config import get_settings
from config.celery import celery_config
from workers.store import inbox

log = logging.getLogger(__name__)

APPLY_ORDER = "returns.apply_order"

_lock = threading.Lock()
_producer: Celery | None = None
_producer_pid: int | None = None


def _app() -> Celery:
    global _producer, _producer_pid
    # A producer inherited over fork() shares its broker connection with the parent.
    if _producer is None or _producer_pid != os.getpid():
        with _lock:
            if _producer is None or _producer_pid != os.getpid():
                app = Celery("returnsync-doorbell")
                app.conf.update(celery_config(get_settings()))
                _producer, _producer_pid = app, os.getpid()
    return _producer


def ring(order_id: int) -> bool:
    """Ring the order's doorbell. Never raises: False (and a log line) when Redis is unreachable,
    in which case the sweep rings it later because its events keep ``enqueued_at`` unset or old."""
    try:
        # retry=False: on the ingest request path a dead broker must cost one failed connect,
        # not Celery's publish-retry loop.
        _app().send_task(APPLY_ORDER, args=(order_id,), retry=False)
    except Exception:  # kombu raises several families (OperationalError, redis errors, OSError)
        log.warning("could not ring order %s; the sweep will", order_id, exc_info=True)
        return False
    try:
        inbox.mark_enqueued(order_id)
    except Exception:
        # The message is out; a missing mark only means the sweep may ring it once more.
        log.warning("rang order %s but could not mark its events", order_id, exc_info=True)
    return True
