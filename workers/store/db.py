"""One psycopg2 connection pool per process and a transaction context manager.

Every write of the system goes through ``transaction()``: it commits on success and rolls back on
any exception, so a half-written event can never become visible.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from config import get_settings

_lock = threading.Lock()
_pool: psycopg2.pool.ThreadedConnectionPool | None = None
_pool_pid: int | None = None

# Raised when Postgres cannot be reached or dropped the connection: callers map it to 503 / retry.
DatabaseUnavailable = (psycopg2.OperationalError, psycopg2.InterfaceError)


def _get_pool() -> psycopg2.pool.ThreadedConnectionPool:
    global _pool, _pool_pid
    # A pool inherited over fork() shares sockets with the parent; build a fresh one per process.
    if _pool is None or _pool_pid != os.getpid():
        with _lock:
            if _pool is None or _pool_pid != os.getpid():
                settings = get_settings()
                _pool = psycopg2.pool.ThreadedConnectionPool(
                    0, settings.database_pool_max, settings.database_url, connect_timeout=3
                )
                # psycopg2 keeps a returned connection only while fewer than `minconn` are idle;
                # with 0 it would close every one and reconnect on the next borrow (~5 ms each).
                # Raising it after construction keeps connections warm without opening them all
                # eagerly at start-up (a process that never touches Postgres opens none).
                _pool.minconn = settings.database_pool_max
                _pool_pid = os.getpid()
    return _pool


def close_pool() -> None:
    """Close every pooled connection (tests switch databases; workers close on shutdown)."""
    global _pool
    with _lock:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.closeall()
        _pool = None


@contextmanager
def connection() -> Iterator[psycopg2.extensions.connection]:
    """Borrow a connection; a broken one is discarded instead of going back to the pool."""
    pool = _get_pool()
    conn = pool.getconn()
    broken = False
    try:
        yield conn
    except DatabaseUnavailable:
        broken = True
        raise
    finally:
        if conn.closed:
            broken = True
        elif not broken and conn.status != psycopg2.extensions.STATUS_READY:
            conn.rollback()
        pool.putconn(conn, close=broken)


@contextmanager
def transaction() -> Iterator[psycopg2.extras.RealDictCursor]:
    """Run the block in one transaction and yield a cursor whose rows are dicts."""
    with connection() as conn:
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                yield cur
            conn.commit()
        except BaseException:
            if not conn.closed:
                conn.rollback()
            raise
