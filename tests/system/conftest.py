"""System tests run the real processes; they need every component and the local services."""

from __future__ import annotations

import importlib.util
import subprocess

import pytest

# The modules the processes are started from. While one is missing (components land in
# parallel) the system tests are skipped with the name, instead of failing on start-up.
REQUIRED = ("ingest.app", "tasks.app", "tasks.returns", "workers.apply", "standin.server")


def _missing() -> list[str]:
    missing = []
    for name in REQUIRED:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ModuleNotFoundError:
            missing.append(name)
    return missing


def _services_up() -> bool:
    pg = subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False, timeout=10)
    rd = subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], check=False, timeout=10,
                        capture_output=True)
    return pg.returncode == 0 and rd.returncode == 0


@pytest.fixture(scope="session")
def system_ready() -> None:
    missing = _missing()
    if missing:
        pytest.skip(f"system components not there yet: {', '.join(missing)}")
    if not _services_up():
        pytest.skip("Postgres or Redis is not running (make services)")
