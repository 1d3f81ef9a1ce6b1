"""The log of beat task runs (table ``beat_runs``): when each periodic task last ran and what it did."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workers.store.db import transaction


@dataclass(frozen=True)
class BeatRun:
    id: int
    task: str
    worker: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    result: Any


def start(task: str, worker: str | None) -> int:
    with transaction() as cur:
        cur.execute("INSERT INTO beat_runs (task, worker) VALUES (%s, %s) RETURNING id", (task, worker))
        row = cur.fetchone()
    assert row is not None
    return int(row["id"])


def finish(run_id: int, outcome: str, result: Any) -> None:
    with transaction() as cur:
        cur.execute(
            "UPDATE beat_runs SET finished_at = now(), outcome = %s, result = %s::jsonb WHERE id = %s",
            (outcome, json.dumps(result, default=str), run_id),
        )


def runs(task: str | None = None, limit: int = 1000) -> list[BeatRun]:
    """The latest runs (of one task, or all), oldest first."""
    with transaction() as cur:
        cur.execute(
            "SELECT * FROM (SELECT * FROM beat_runs WHERE %s::text IS NULL OR task = %s"
            " ORDER BY started_at DESC, id DESC LIMIT %s) latest ORDER BY started_at, id",
            (task, task, limit),
        )
        return [
            BeatRun(
                id=row["id"],
                task=row["task"],
                worker=row["worker"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                outcome=row["outcome"],
                result=row["result"],
            )
            for row in cur.fetchall()
        ]
