"""The doorbell: tell the workers an order has work, by publishing ``returns.apply_order(order_id)``.

Postgres holds the work; a message in Redis only says "look at this order". Losing one costs a
delay (the beat sweep re-rings from Postgres), never an event. The message is sent by the task's
stable name through a producer-only Celery app built from the same settings as the workers'
(``config.celery``), so the relay and the sweep ring the same bell without importing the task
layer. Nothing on ingest's request path rings it: ingest only commits (``workers.store.outbox``).
"""

from __future__ import annotations

import logging
import os
import threading

from celery import Celery

from config import get_settings
from config.celery import celery_config
from workers.store import outbox

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


def publish(order_id: int) -> bool:
    """Put one ``returns.apply_order(order_id)`` message on the queue. Never raises: False (and a
    log line) when Redis is unreachable."""
    try:
        # retry=False: a dead broker costs one failed connect, not Celery's publish-retry loop;
        # the callers (relay, sweep) have their own schedule for trying again.
        _app().send_task(APPLY_ORDER, args=(order_id,), retry=False)
    except Exception as exc:  # kombu raises several families (OperationalError, redis errors, OSError)
        log.warning("could not ring order %s: %s", order_id, type(exc).__name__)
        return False
    return True


def ring(order_id: int) -> bool:
    """Ring the order's doorbell and mark all its open events rung; False when Redis is away, in
    which case the sweep rings it later because its events keep ``enqueued_at`` unset or old."""
    if not publish(order_id):
        return False
    try:
        outbox.mark_enqueued(order_id)
    except Exception:
        # The message is out; a missing mark only means the sweep may ring it once more.
        log.warning("rang order %s but could not mark its events", order_id, exc_info=True)
    return True
