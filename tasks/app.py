"""The Celery application: ``celery -A tasks.app worker -Q returns`` / ``celery -A tasks.app beat``."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery
from celery.signals import (
    celeryd_init,
    heartbeat_sent,
    setup_logging,
    task_postrun,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)
from celery.utils.log import mlevel

from config import get_settings, require_safe
from config import logging as log_config
from config.celery import celery_config
from workers import metrics
from workers.store import db

# Every Celery process (worker, beat, Flower) loads this module first.
require_safe(get_settings(), "celery")
# A worker of the gevent pool (`-P gevent`, the Procfile's) runs many tasks per process, each
# waiting on Shopify most of its time; Celery has monkey-patched the standard library before
# loading us, and psycopg2 (C code) is made to yield to the other greenlets as well while it
# waits on Postgres.
db.cooperate_if_gevent()
app = Celery("returnsync")
app.conf.update(celery_config(get_settings()))
# Imported by the worker at start-up (they import this module, so not from here).
app.conf.include = ["tasks.returns", "tasks.shopify", "tasks.reconcile"]

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


# Which Celery process this is, for the "process" of its log lines: the command's subcommand.
_ROLE = next((word for word in sys.argv[1:] if word in ("worker", "beat", "flower")), "celery")
# Every beat task, by the name the schedule sends (their last runs are what "beat stalled" watches).
_BEAT_TASKS = frozenset(str(entry["task"]) for entry in app.conf.beat_schedule.values())


@setup_logging.connect
def _log_as_json_or_text(loglevel: int | str | None = None, **_: Any) -> None:
    # Connected, so Celery leaves logging to us (in the worker, each prefork child, and the beat).
    # The more talkative of LOG_LEVEL and the command's -l (the Procfile says -l info; a harness
    # waits for the worker's INFO "ready." while LOG_LEVEL quiets the other processes).
    level = mlevel(get_settings().log_level.upper())
    log_config.configure(_ROLE, min(level, mlevel(loglevel)) if loglevel else level)


@celeryd_init.connect
def _log_before_the_worker_starts(**_: Any) -> None:
    # The worker warns (running as root, say) before it sets its logging up: in our format too.
    log_config.configure(_ROLE)


@worker_ready.connect
def _first_heartbeat(sender: Any = None, **_: Any) -> None:
    metrics.heartbeat(getattr(sender, "hostname", None) or "unknown")


@heartbeat_sent.connect
def _heartbeat(sender: Any = None, **_: Any) -> None:
    # Every worker-heartbeat event (2 s) the consumer sends: the worker is alive and connected.
    metrics.heartbeat(getattr(getattr(sender, "eventer", None), "hostname", None) or "unknown")


@task_postrun.connect
def _beat_task_done(task: Any = None, state: str | None = None, **_: Any) -> None:
    # A run that raised does not count: "beat stalled" then says the task has not done its job.
    name = getattr(task, "name", None)
    if name in _BEAT_TASKS and state == "SUCCESS":
        metrics.beat_ran(name)


@worker_process_shutdown.connect
def _metrics_of_a_gone_child(pid: int | None = None, **_: Any) -> None:
    if pid is not None:
        metrics.process_dead(pid)
