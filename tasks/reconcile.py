"""Beat tasks of reconciliation (stable names: ``reconcile.expire_waiting``,
``reconcile.drift_check``, ``reconcile.retention``). Each is idempotent and bounded per run; none
is retried (the next beat is the retry), and each message expires before the next is sent."""

from __future__ import annotations

from tasks.app import app
from tasks.base import ReturnsTask
from tasks.periodic import recorded
from workers.reconcile import drift, horizon, retention


@app.task(name="reconcile.expire_waiting", base=ReturnsTask, retry_policy=None)
def expire_waiting() -> dict[str, int]:
    """Beat: fail the returns waiting beyond their shop's horizon, with the reason."""
    return recorded("reconcile.expire_waiting", horizon.expire_waiting)


@app.task(name="reconcile.drift_check", base=ReturnsTask, retry_policy=None)
def drift_check() -> dict[str, int]:
    """Beat: compare recently applied returns with Shopify; report or repair what drifted."""
    return recorded("reconcile.drift_check", drift.check_drift)


@app.task(name="reconcile.retention", base=ReturnsTask, retry_policy=None)
def retention_prune() -> dict[str, int]:
    """Beat: cut old finished event bodies, delete old call logs and finished attempts."""
    return recorded("reconcile.retention", retention.prune)
