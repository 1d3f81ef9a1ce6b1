"""Retention: finished work older than ``RETENTION_AGE_S`` cut to what the sync still needs.

Event rows and their statuses stay (the status API answers for every return as before); their
bodies are cut to the erasure's minimum (``workers.store.privacy``); the call log, finished
attempts, beat runs and resolved drift findings go. Pending, waiting and failed work is never
touched (``workers.store.retention``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from config import get_settings
from workers.store import retention
from workers.store import returns as store


def prune(now: datetime | None = None) -> dict[str, int]:
    """One bounded round of every kind; returns how many rows of each were done."""
    settings = get_settings()
    before = (now or store.db_now()) - timedelta(seconds=settings.retention_age_s)
    limit = settings.retention_batch
    return {
        "event_bodies": retention.prune_event_bodies(before, limit),
        "shopify_calls": retention.delete_calls(before, limit),
        "attempts": retention.delete_attempts(before, limit),
        "beat_runs": retention.delete_beat_runs(before, limit),
        "drifts": retention.delete_resolved_drifts(before, limit),
    }
