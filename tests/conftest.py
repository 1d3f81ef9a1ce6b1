"""Shared fixtures: a fresh Postgres database and a private Redis database per test session.

The settings of the code under test come from the environment (config/), so the session sets the
variables here, before anything reads them, and child processes (workers, gunicorn) inherit them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg2
import pytest
import redis

# The suite runs in the local mode (the repository's fixed secrets), whoever starts pytest.
os.environ.setdefault("RETURNSYNC_ENV", "local")
os.environ.setdefault("DATABASE_URL", f"postgresql://postgres@127.0.0.1:5432/returnsync_test_{os.getpid()}")
# A Redis database of its own per session (1-9; benchmarks use 10-15), so two sessions on one
# machine never take each other's queued messages.
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{1 + os.getpid() % 9}")

from hypothesis import settings as hypothesis_settings  # noqa: E402

# In CI the property tests explore the same examples every run (a CI verdict must not depend on a
# random draw); on developer machines they keep drawing new ones, which is where they find bugs.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

from config import get_settings  # noqa: E402  (must follow the environment set-up above)
from standin.server import RunningStandin, start_in_thread  # noqa: E402
from workers.store import db  # noqa: E402
from workers.store.migrate import ensure_database, migrate  # noqa: E402

get_settings.cache_clear()

TABLES = ("shopify_calls", "attempts", "events", "returns", "orders", "shops")


@pytest.fixture(scope="session")
def database() -> Iterator[str]:
    """A database of our own, migrated once, dropped at the end of the session."""
    url = get_settings().database_url
    ensure_database(url)
    migrate()
    yield url
    db.close_pool()
    name = url.rsplit("/", 1)[1]
    admin = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def clean_db(database: str) -> Iterator[str]:
    """Every table empty at the start of the test."""
    with db.transaction() as cur:
        cur.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    yield database


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The session's private Redis database, emptied before the test."""
    client = redis.Redis.from_url(get_settings().redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def standin() -> Iterator[RunningStandin]:
    """One in-process Shopify stand-in for the session (its schemas are built once). Tests that
    need isolation use shops of their own on it."""
    running = start_in_thread()
    yield running
    running.stop()
