"""A task for the worker test (``celery worker -I tests.observability.probe_tasks``): it logs,
with and without a bound context, so the test can read what a task's log lines carry."""

from __future__ import annotations

import logging

from config import logcontext
from tasks.app import app

log = logging.getLogger("tasks.probe")


@app.task(name="observability.probe")
def probe(token: str) -> None:
    log.info("probe-run with %s", token)
    with logcontext.bind(shop="probe.myshopify.com", order_id=42):
        log.info("probe-bound")
