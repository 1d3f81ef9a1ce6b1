"""The Celery application: ``celery -A tasks.app worker -Q returns`` / ``celery -A tasks.app beat``."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_process_shutdown

from config import get_settings, require_safe
from config.celery import celery_config
from workers.store import db

# Every Celery process (worker, beat, Flower) loads this module first.
require_safe(get_settings(), "celery")
app = Celery("returnsync")
app.conf.update(celery_config(get_settings()))
# Imported by the worker at start-up (they import this module, so not from here).
app.conf.include = ["tasks.returns", "tasks.shopify"]

log = logging.getLogger(__name__)


@worker_process_init.connect
def _fresh_connections_per_process(**_: Any) -> None:
    # A prefork child inherits the parent's pool object and sockets. Dropping the pool (without
    # closing: closing would terminate the parent's sessions) makes the child open its own.
    db.close_pool()
    logging.basicConfig(level=get_settings().log_level)


@worker_process_shutdown.connect
def _close_connections(**_: Any) -> None:
    db.close_pool()
