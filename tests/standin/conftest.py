"""Fixtures for the stand-in tests: one in-process server per session (schemas build once)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from standin.admin import StandinAdmin  # noqa: E402
from standin.server import RunningStandin, start_in_thread  # noqa: E402


@pytest.fixture(scope="session")
def standin() -> Iterator[RunningStandin]:
    running = start_in_thread()
    yield running
    running.stop()


@pytest.fixture()
def admin(standin: RunningStandin) -> StandinAdmin:
    return StandinAdmin(standin.url)
