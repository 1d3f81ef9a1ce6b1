"""One Postgres connection pool per process and a transaction context manager.

Every write of the system goes through ``transaction()``: it commits on success and rolls back on
any exception, so a half-written event can never become visible.

The pool is psycopg2's ``ThreadedConnectionPool`` behind a semaphore of the same size: psycopg2's
pool raises at once when it is empty, while callers (gunicorn's gevent greenlets, Celery threads)
should wait their turn for a bounded time. The semaphore is ``threading``'s, so under gevent's
monkey patching it is cooperative and a waiting greenlet never blocks the others.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from config import get_settings


class PoolTimeout(psycopg2.OperationalError):
    """Every pooled connection stayed busy for longer than the wait allows."""


# Raised when Postgres cannot be reached or dropped the connection (or the pool could not serve a
# connection in time): callers map it to 503 / retry.
DatabaseUnavailable = (psycopg2.OperationalError, psycopg2.InterfaceError)

# Longer than any single statement of the request path; a wait beyond it means overload, and a 503
# (retried by the producer) beats a request that hangs.
POOL_WAIT_S = 5.0

_lock = threading.Lock()
_pool: psycopg2.pool.ThreadedConnectionPool | None = None
_slots: threading.BoundedSemaphore | None = None
_pool_pid: int | None = None


def _get_pool() -> tuple[psycopg2.pool.ThreadedConnectionPool, threading.BoundedSemaphore]:
    global _pool, _slots, _pool_pid
    # A pool inherited over fork() shares sockets with the parent; build a fresh one per process.
    if _pool is None or _slots is None or _pool_pid != os.getpid():
        with _lock:
            if _pool is None or _slots is None or _pool_pid != os.getpid():
                settings = get_settings()
                size = settings.database_pool_max
                pool = psycopg2.pool.ThreadedConnectionPool(0, size, settings.database_url, connect_timeout=3)
                # psycopg2 keeps a returned connection only while fewer than `minconn` are idle;
                # with 0 it would close every one and reconnect on the next borrow (~5 ms each).
                # Raising it after construction keeps connections warm without opening them all
                # eagerly at start-up (a process that never touches Postgres opens none).
                pool.minconn = size
                _pool, _slots, _pool_pid = pool, threading.BoundedSemaphore(size), os.getpid()
    return _pool, _slots


def close_pool() -> None:
    """Close every pooled connection (tests switch databases; workers close on shutdown)."""
    global _pool, _slots
    with _lock:
        if _pool is not None and _pool_pid == os.getpid():
            _pool.closeall()
        _pool = None
        _slots = None


@contextmanager
def connection() -> Iterator[psycopg2.extensions.connection]:
    """Borrow a connection, waiting up to ``POOL_WAIT_S`` for one to be free; a broken one is
    discarded instead of going back to the pool."""
    pool, slots = _get_pool()
    if not slots.acquire(timeout=POOL_WAIT_S):
        raise PoolTimeout(f"no database connection free within {POOL_WAIT_S:g}s")
    try:
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
    finally:
        slots.release()


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


def statement(sql: str, params: tuple[Any, ...] | Mapping[str, Any]) -> list[dict[str, Any]]:
    """One statement in autocommit: atomic by itself, and one round trip where ``transaction``
    takes three (BEGIN, it, COMMIT). Returns its rows. For everything a single statement does
    alone; a read and a write that must agree belong in one ``transaction``."""
    with connection() as conn:
        conn.autocommit = True
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, params)
                rows = cur.fetchall() if cur.description else []
        finally:
            if not conn.closed:
                conn.autocommit = False
    return [dict(row) for row in rows]


def single_statement(sql: str, params: tuple[Any, ...] | Mapping[str, Any]) -> dict[str, Any] | None:
    """``statement``'s first row, if any."""
    rows = statement(sql, params)
    return rows[0] if rows else None


def cooperate_if_gevent() -> bool:
    """Make psycopg2 wait cooperatively when this process runs under gevent's monkey patching
    (gunicorn's gevent workers, Celery's gevent pool); a no-op otherwise. True if patched."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a requirement
        return False
    if not monkey.is_module_patched("socket"):
        return False
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()
    return True
