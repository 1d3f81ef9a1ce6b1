"""The base of every returnsync task: deadline, delivery defaults and the one retry path."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from config import get_settings
from workers.retry import apply_policy
from workers.store.db import DatabaseUnavailable

log = logging.getLogger(__name__)

_settings = get_settings()


class ReturnsTask(Task):
    """Deadline and delivery semantics come from ``config.celery`` (acks_late, reject on worker
    lost, JSON only); they are repeated here per task so a task sent to another app keeps them."""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    serializer = "json"
    soft_time_limit = _settings.task_deadline_s
    time_limit = _settings.task_deadline_s + 30
    # No max_retries here: whether to give up is decided by the RetryPolicy against Postgres
    # (attempts rows), which survives a lost message; Celery's counter does not.
    max_retries = None

    def retry_in(self, countdown: float, exc: BaseException | None = None) -> None:
        """The one way a task comes back later: re-publish itself with a countdown.

        Raises celery's Retry (the current message is acked once the new one is sent). If the
        broker is down the new message cannot be sent; that is fine: the events are still open in
        Postgres and the beat sweep rings the order again.
        """
        countdown = max(0.0, float(countdown))
        log.info("%s%s again in %.1fs", self.name, tuple(self.request.args or ()), countdown)
        raise self.retry(countdown=countdown, exc=exc, max_retries=None)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except (*DatabaseUnavailable, SoftTimeLimitExceeded) as exc:
            # Postgres unreachable, or the run overran its deadline: nothing was lost (the events
            # are still open), so come back after the policy's backoff.
            attempt = int(self.request.retries or 0) + 1
            policy = apply_policy(get_settings())
            if not policy.should_retry(attempt):
                log.error("%s: %s; leaving it to the sweep", self.name, exc)
                raise
            self.retry_in(policy.delay(attempt), exc=exc)
            raise  # unreachable: retry_in raises
