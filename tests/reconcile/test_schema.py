"""Migration 0005: each new word list in Python equals its SQL CHECK, and the beat schedule's
entries each expire before their next run."""

from __future__ import annotations

from enum import StrEnum

import pytest

from config import get_settings
from config.celery import celery_config
from tests.test_statuses import check_values
from workers.store.drifts import DriftAction, DriftKind, DriftMode


@pytest.mark.parametrize(
    ("table", "column", "enum"),
    [("drifts", "kind", DriftKind), ("drifts", "action", DriftAction), ("shops", "drift_mode", DriftMode)],
)
def test_the_sql_check_allows_exactly_the_enums_values(
    database: str, table: str, column: str, enum: type[StrEnum]
) -> None:
    assert check_values(table, column) == {member.value for member in enum}


def test_every_beat_task_expires_before_its_next_run() -> None:
    schedule = celery_config(get_settings())["beat_schedule"]
    assert set(schedule) == {
        "returns.sweep",
        "shopify.maintain",
        "reconcile.expire_waiting",
        "reconcile.drift_check",
        "reconcile.retention",
    }
    for name, entry in schedule.items():
        assert entry["task"] == name
        assert 0 < entry["options"]["expires"] < entry["schedule"], entry
