"""The base of every returnsync task: deadline, delivery defaults and the one retry path."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from celery import Task

from config import get_settings
from workers.retry import RetryPolicy, Verdict, run_policy

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
    # Celery's own retry counter is never consulted: whether to give up is decided by the retry
    # policy against Postgres (returns.failures), which survives a lost or duplicated message.
    max_retries = None
    # None: a task that is not retried at all (beat tasks: the next beat is the retry).
    retry_policy: ClassVar[RetryPolicy | None] = run_policy(_settings)

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
        except Exception as exc:
            # What escapes a run is what it could not record: Postgres away (not a failure of the
            # order: come back after the policy's wait). Anything else is raised for Celery to
            # log; the events are still open in Postgres and the sweep rings the order again.
            decision = self.retry_policy.decide(exc, attempt=1) if self.retry_policy else None
            if decision is not None and decision.verdict is Verdict.WAIT:
                self.retry_in(decision.delay_s, exc=exc)
            raise
