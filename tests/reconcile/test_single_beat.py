"""Two real beat processes and a worker: exactly one beat schedules, each task runs once per period
(counted in Postgres, table beat_runs), and the standby takes over when the active beat dies."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.apply.conftest import wait_until, worker_processes
from tests.reconcile.conftest import BeatProcess
from workers.store import beat_runs
from workers.store.returns import db_now

INTERVAL_S = 2
BEAT_TASKS = (
    "returns.sweep",
    "shopify.maintain",
    "reconcile.expire_waiting",
    "reconcile.drift_check",
    "reconcile.retention",
)
SENT = "Scheduler: Sending due task"


@pytest.fixture
def quick_schedule(monkeypatch: pytest.MonkeyPatch, fresh_settings: None) -> None:
    """Every beat task every 2 s; beats look every second, and a dead holder's lock lapses in 4 s."""
    for name in ("SWEEP", "MAINTAIN", "HORIZON", "DRIFT", "RETENTION"):
        monkeypatch.setenv(f"{name}_INTERVAL_S", str(INTERVAL_S))
    monkeypatch.setenv("BEAT_MAX_LOOP_S", "1")
    monkeypatch.setenv("BEAT_LOCK_TIMEOUT_S", "4")


def _runs_since(task: str, since: datetime | None) -> list[datetime]:
    return [run.started_at for run in beat_runs.runs(task) if since is None or run.started_at >= since]


def _each_task_ran(times: int, since: datetime | None = None) -> bool:
    return all(len(_runs_since(task, since)) >= times for task in BEAT_TASKS)


def assert_once_per_period(since: datetime | None = None) -> None:
    """n runs of a task spread over at least n - 1 periods: a second scheduler would fit about
    twice as many runs into the same span. (A count of runs against the schedule, not a speed.)"""
    for task in BEAT_TASKS:
        started = _runs_since(task, since)
        span_s = (started[-1] - started[0]).total_seconds()
        periods = len(started) - 1
        assert periods * INTERVAL_S <= span_s * 1.25 + INTERVAL_S / 2, (task, periods, span_s, started)


def assert_runs_done() -> None:
    """Every finished run succeeded; a run still going can only be its task's latest (it was sent
    while we looked), never an older one left behind."""
    runs = beat_runs.runs()
    assert all(run.outcome == "done" for run in runs if run.outcome is not None), runs
    for task in BEAT_TASKS:
        older = [run for run in runs if run.task == task][:-1]
        assert all(run.outcome is not None for run in older), (task, older)


def test_two_beats_schedule_each_task_once_per_period_and_the_standby_takes_over(
    quick_schedule: None, no_beat_runs: None, redis_client, beats
):
    with worker_processes(8):
        # Given one beat that holds the schedule lock, and a second one started after it
        first: BeatProcess = beats("first")
        assert wait_until(lambda: "Starting" in first.log(), 60)
        second: BeatProcess = beats("second")

        # When both run for several periods
        assert wait_until(lambda: _each_task_ran(6), 90), {t: len(_runs_since(t, None)) for t in BEAT_TASKS}

        # Then only the first sends tasks, and every task ran once per period, not twice
        assert SENT in first.log()
        assert SENT not in second.log() and "holding the schedule lock" not in second.log()
        assert_once_per_period()
        assert_runs_done()

        # When the active beat dies without releasing its lock
        first.kill()
        killed_at = db_now()
        # Then the standby takes the schedule over once the lock lapses, and runs go on once per period
        assert wait_until(lambda: "holding the schedule lock" in second.log(), 60), second.log()
        assert wait_until(lambda: _each_task_ran(4, since=killed_at), 90), second.log()
        assert SENT in second.log()
        assert_once_per_period(since=killed_at)


def test_the_beat_survives_a_redis_flush_and_schedules_again(
    quick_schedule: None, no_beat_runs: None, redis_client, beats
):
    with worker_processes(8):
        beat: BeatProcess = beats("only")
        assert wait_until(lambda: _each_task_ran(2), 60), beat.log()
        # When Redis loses everything: the schedule, the lock, the queued messages
        redis_client.flushdb()
        flushed_at = db_now()
        # Then the beat takes its lock again, installs the schedule again and goes on
        assert wait_until(lambda: _each_task_ran(3, since=flushed_at), 60), beat.log()
        assert "installing it again" in beat.log()
        assert beat.process.poll() is None
