"""Per-order mutual exclusion across processes and machines, with fencing tokens.

Why this design
---------------
Events of one order must never be applied concurrently (PRODUCT.md §4): they touch the same
Shopify order (tags, note, returnable quantities), and two workers creating the same return at once
would create it twice. Workers run in several processes on several machines, so the lock must live
in a shared service. We use the one that is already the source of truth:

* **A Postgres session-level advisory lock** (``pg_try_advisory_lock``) on a key derived from
  ``shop domain + order key``, held on a *dedicated* connection for the whole apply run. Postgres
  releases a session lock the moment the session ends, so a worker that dies (kill -9, OOM, machine
  gone) cannot leave an order locked: the server sees the socket close (or, for a vanished machine,
  the TCP keepalives we turn on for that session time out within ~30 s). No lease length to tune,
  no clock to trust, and no extra service (a Redis lock would be lost with Redis, which we treat as
  a disposable doorbell). ``try`` rather than wait: a busy order is retried shortly by the task, so
  a worker slot is never parked behind another worker's Shopify calls.

* **A fencing token**. A lock held through a connection can be lost without the holder noticing at
  once (the connection drops while the worker is inside a slow Shopify call; the server releases
  the lock; another worker takes it). On every acquire we bump ``orders.fence`` and keep the new
  value; every state write of ``workers.store`` checks ``orders.fence = token`` in the same
  transaction (``workers.store.fencing``), holding a share lock on the order row, so a new
  holder's bump waits for it. A holder whose lock was taken over has an old token: its writes
  raise ``LostLock`` and change nothing, and
  the new holder re-reads Shopify before acting, so what the old holder did on Shopify is seen,
  not repeated.

* **The key** is the Shopify Order GID when we know it, else the order row: two order rows (one
  named by id, one by name only) can be the same Shopify order. An order known only by name is
  locked by row first; once its GID is resolved the holder takes the GID lock as well, on the same
  connection, before it writes anything to Shopify.
"""

from __future__ import annotations

import logging
from types import TracebackType

import psycopg2
import psycopg2.extensions

from config import get_settings
from workers.store.fencing import LostLock, bump_fence, check_fence

__all__ = ["LostLock", "OrderLock", "order_key", "try_lock_order"]

log = logging.getLogger(__name__)


def order_key(shop_domain: str, order_gid: str | None, order_id: int) -> str:
    """The lock key of an order: its Shopify GID when known, else its row."""
    return f"{shop_domain}:{order_gid}" if order_gid else f"{shop_domain}:row:{order_id}"


class OrderLock:
    """Held advisory locks on one dedicated connection, plus this holder's fencing token."""

    def __init__(self, conn: psycopg2.extensions.connection, order_id: int) -> None:
        self._conn = conn
        self.order_id = order_id
        self.token: int = 0
        self.keys: list[str] = []

    def try_add(self, key: str) -> bool:
        """Take one more key on the same session (e.g. the GID once resolved)."""
        if key in self.keys:
            return True
        with self._conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,))
            row = cur.fetchone()
        got = bool(row and row[0])
        if got:
            self.keys.append(key)
        return got

    def alive(self) -> bool:
        """Is the lock session still there? (A dropped connection means the lock is gone.)"""
        if self._conn.closed:
            return False
        try:
            with self._conn.cursor() as cur:
                cur.execute("SELECT 1")
            return True
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            return False

    def check(self) -> None:
        """Raise ``LostLock`` unless this holder still owns the order: its session is alive (so its
        advisory locks are) and no newer holder has bumped the fence. Called before every Shopify
        mutation, because a restart of Postgres frees the lock without telling the holder."""
        try:
            with self._conn.cursor() as cur:
                check_fence(cur, self.order_id, self.token)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            raise LostLock(f"lock session of order {self.order_id} is gone ({type(exc).__name__})") from exc

    def release(self) -> None:
        if self._conn.closed:
            return
        try:
            # Unlock explicitly first: the server handles a closed socket asynchronously, so a
            # worker asking right after us could still find the lock taken.
            with self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock_all()")
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            pass  # the session is gone, and its locks with it
        finally:
            # Closing the session releases every advisory lock it holds, even mid-failure.
            self._conn.close()

    def __enter__(self) -> OrderLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _connect() -> psycopg2.extensions.connection:
    conn = psycopg2.connect(get_settings().database_url, connect_timeout=3)
    conn.autocommit = True  # the lock is session-level; no transaction must stay open around it
    with conn.cursor() as cur:
        # Server-side keepalives for this session only: if the worker's machine vanishes without
        # closing the socket, the server notices within ~10 + 5 * 4 s and releases the lock.
        cur.execute("SET tcp_keepalives_idle = 10")
        cur.execute("SET tcp_keepalives_interval = 5")
        cur.execute("SET tcp_keepalives_count = 4")
    return conn


def try_lock_order(key: str, order_id: int) -> OrderLock | None:
    """Take the order's lock without waiting; None when another worker holds it."""
    conn = _connect()
    lock = OrderLock(conn, order_id)
    try:
        if not lock.try_add(key):
            lock.release()
            return None
        lock.token = bump_fence(order_id)
    except BaseException:
        lock.release()
        raise
    return lock
