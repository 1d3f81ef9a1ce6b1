"""Apply the numbered migrations in ``migrations/`` once each, in order: ``python -m workers.store.migrate``.

A migration is a ``NNNN_name.sql`` file, or a ``NNNN_name.py`` module with ``migrate(cur)`` for
what SQL cannot do (encrypting with a key from the environment). All pending ones run in one
transaction. Applied versions are kept in ``schema_migrations``; an advisory lock lets several
processes (``make run`` and a worker starting at the same time) call this safely.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from psycopg2 import sql

from config import get_settings
from workers.store.db import transaction

MIGRATIONS = Path(__file__).with_name("migrations")
_LOCK_KEY = 7_426_001  # arbitrary, fixed: serialises concurrent migrators

log = logging.getLogger(__name__)


def drop_database(database_url: str) -> None:
    """Drop the database named in the URL (the demo database of `make run`), closing its sessions."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    conn = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")), connect_timeout=3)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


def ensure_database(database_url: str) -> None:
    """Create the database named in the URL if it does not exist (local runs and tests)."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(path="/postgres"))
    conn = psycopg2.connect(admin_url, connect_timeout=3)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()


def migrate(until: str | None = None) -> list[str]:
    """Apply pending migrations (up to and including version ``until``, if given); return the
    versions applied now."""
    applied_now: list[str] = []
    with transaction() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version FROM schema_migrations")
        done = {row["version"] for row in cur.fetchall()}
        for path in sorted(
            p for p in MIGRATIONS.iterdir() if p.suffix in (".sql", ".py") and p.stem[:4].isdigit()
        ):
            if path.stem in done:
                continue
            if until is not None and path.stem > until:
                break
            if path.suffix == ".sql":
                cur.execute(path.read_text())
            else:
                module = importlib.import_module(f"workers.store.migrations.{path.stem}")
                module.migrate(cur)
            cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (path.stem,))
            applied_now.append(path.stem)
    return applied_now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.store.migrate", description=__doc__)
    parser.add_argument(
        "--recreate", action="store_true", help="drop the database first (the throw-away demo database)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    url = get_settings().database_url
    if args.recreate:
        drop_database(url)
    ensure_database(url)
    applied = migrate()
    print("migrations applied: " + (", ".join(applied) if applied else "none (up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
