"""Fixtures for the reconciliation tests: the apply tests' shop and workers, and real beat processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config import get_settings
from tests.apply.conftest import ROOT, admin, shop  # noqa: F401  (the fixtures, for tests here)
from workers.store.db import transaction


class BeatProcess:
    """A real ``celery -A tasks.app beat`` with the test's environment, its log in a file."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._log = tempfile.NamedTemporaryFile(prefix=f"celery-beat-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        celery = str(Path(sys.executable).with_name("celery"))
        self.process = subprocess.Popen(
            [celery, "-A", "tasks.app", "beat", "-l", "info"],
            cwd=ROOT,
            env=os.environ.copy(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def kill(self) -> None:
        """Gone without a word (kill -9): its lock is not released, it expires."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        os.unlink(self._log.name)


@pytest.fixture
def beats() -> Iterator[Callable[[str], BeatProcess]]:
    """Start beat processes with ``beats(name)``; all are stopped after the test."""
    started: list[BeatProcess] = []

    def start(name: str) -> BeatProcess:
        beat = BeatProcess(name)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """Settings read again from the environment (tests set variables with monkeypatch)."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def no_beat_runs(database: str) -> None:
    # Not tied to shops, so the clean_db fixture's TRUNCATE ... CASCADE leaves it.
    with transaction() as cur:
        cur.execute("TRUNCATE beat_runs RESTART IDENTITY")
