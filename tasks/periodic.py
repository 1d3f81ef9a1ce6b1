"""What every beat task shares: each run is logged in ``beat_runs`` (when, where, what it did)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from celery import current_task

from workers.store import beat_runs

T = TypeVar("T")


def recorded(task_name: str, work: Callable[[], T]) -> T:
    """Run ``work`` as one logged run of ``task_name``; a run that raises is logged as failed
    and raised for Celery (the next beat is its retry)."""
    request = getattr(current_task, "request", None)
    run_id = beat_runs.start(task_name, getattr(request, "hostname", None))
    try:
        result = work()
    except Exception as exc:
        beat_runs.finish(run_id, "failed", {"error": type(exc).__name__})
        raise
    beat_runs.finish(run_id, "done", result)
    return result
