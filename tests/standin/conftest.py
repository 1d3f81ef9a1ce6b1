"""Fixtures for the stand-in tests: one in-process server per session (schemas build once)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from standin.admin import StandinAdmin  # noqa: E402
from standin.server import RunningStandin  # noqa: E402


@pytest.fixture()
def admin(standin: RunningStandin) -> StandinAdmin:
    return StandinAdmin(standin.url)
