"""System tests run the real processes; they need the local Postgres and Redis (`make services`)."""

from __future__ import annotations

import subprocess

import pytest


def _services_up() -> bool:
    pg = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False, timeout=10)
    rd = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "ping"], check=False, timeout=10, capture_output=True
    )
    return pg.returncode == 0 and rd.returncode == 0


@pytest.fixture(scope="session")
def system_ready() -> None:
    # Fail, never skip: a system test that quietly does not run proves nothing.
    if not _services_up():
        pytest.fail("Postgres or Redis is not running: start them with `make services`")
