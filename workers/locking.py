"""Per-order mutual exclusion across processes and machines: a lease row plus a fencing token.

Why this design
---------------
Events of one order must never be applied concurrently (PRODUCT.md §4): they touch the same
Shopify order (tags, note, returnable quantities), and two workers creating the same return at once
would create it twice. Workers run in many processes on many machines, so the lock lives in the
service that is already the source of truth, Postgres, as a **lease row** in ``order_leases``:

* **Taken, renewed and released by single statements.** Nothing holds a session or a
  transaction between them, so the lock works behind PgBouncer in transaction pooling (where a
  session advisory lock does not hold: the next transaction may run on another server
  connection) and an in-flight run costs no Postgres connection while it waits on Shopify. The
  earlier design, a session advisory lock on a dedicated connection, needed one connection per
  in-flight order; with many calls in flight per process that is the pool's whole size.

* **Expiry on Postgres' clock.** A lease lasts ``ORDER_LEASE_TTL_S`` from its last renewal, as
  ``now()`` of the database sees it; no worker's clock is ever compared with another's. A worker
  that dies (kill -9, OOM, machine gone) leaves its lease to expire: the order is taken over after
  at most the TTL. That is the price of not holding a session (an advisory lock was freed the
  moment the socket closed); the TTL is kept short and every run renews as it goes.

* **Renewed before every Shopify send that needs it.** The client calls ``guard`` before each
  request (retries included). A mutation always renews and checks the fence in one statement, so
  a holder that lost its lease (expired while it was stopped, or broken by an operator) never
  reaches Shopify; a read renews once a third of the TTL has passed. Settings require the TTL to
  be at least twice a request's connect + read timeout, so a lease renewed just before a request
  outlives that request, however slow Shopify is.

* **A fencing token.** On every acquire we bump ``orders.fence`` in the same statement and keep
  the new value; every state write of ``workers.store`` checks ``orders.fence = token`` in the same
  transaction (``workers.store.fencing``), holding a share lock on the order row, so a new holder's
  bump waits for it. A holder whose lease was taken over has an old token: its writes raise
  ``LostLock`` and change nothing, and the new holder re-reads Shopify before acting, so what the
  old holder did on Shopify is seen, not repeated.

* **The key** is the Shopify Order GID when we know it, else the order row: two order rows (one
  named by id, one by name only) can be the same Shopify order. An order known only by name is
  leased by row first; once its GID is resolved the holder leases the GID key as well, before it
  writes anything to Shopify.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

import psycopg2

from config import get_settings
from workers.store.db import single_statement
from workers.store.fencing import LostLock

__all__ = ["LostLock", "OrderLock", "order_key", "try_lock_order"]

log = logging.getLogger(__name__)

_TAKE = """
WITH taken AS (
    INSERT INTO order_leases AS l (key, order_id, holder, expires_at)
    VALUES (%(key)s, %(order_id)s, %(holder)s, now() + make_interval(secs => %(ttl)s))
    ON CONFLICT (key) DO UPDATE
        SET order_id = EXCLUDED.order_id, holder = EXCLUDED.holder,
            taken_at = now(), expires_at = EXCLUDED.expires_at
        WHERE l.expires_at <= now()
    RETURNING key
), bumped AS (
    UPDATE orders SET fence = fence + 1
    WHERE id = %(order_id)s AND %(bump)s AND EXISTS (SELECT 1 FROM taken)
    RETURNING fence
)
SELECT EXISTS (SELECT 1 FROM taken) AS taken, (SELECT fence FROM bumped) AS fence
"""

_RENEW = """
WITH renewed AS (
    UPDATE order_leases SET expires_at = now() + make_interval(secs => %(ttl)s)
    WHERE key = ANY(%(keys)s) AND holder = %(holder)s
    RETURNING key
)
SELECT (SELECT count(*) FROM renewed) AS held, (SELECT fence FROM orders WHERE id = %(order_id)s) AS fence
"""

_RELEASE = "DELETE FROM order_leases WHERE key = ANY(%(keys)s) AND holder = %(holder)s"


def order_key(shop_domain: str, order_gid: str | None, order_id: int) -> str:
    """The lock key of an order: its Shopify GID when known, else its row."""
    return f"{shop_domain}:{order_gid}" if order_gid else f"{shop_domain}:row:{order_id}"


def _holder() -> str:
    # Who holds it, for operators (diagnose shows it), plus a nonce: two runs of one process are
    # two holders.
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


class OrderLock:
    """The leases one run holds on an order's keys, and this holder's fencing token."""

    def __init__(
        self, order_id: int, *, ttl_s: float | None = None, on_renew: Callable[[], None] | None = None
    ) -> None:
        self.order_id = order_id
        self.on_renew = on_renew  # told after each renewal (the dispatcher keeps the run's place)
        self.holder = _holder()
        self.ttl_s = float(ttl_s if ttl_s is not None else get_settings().order_lease_ttl_s)
        self.token: int = 0
        self.keys: list[str] = []
        self._renewed_at = 0.0  # time.monotonic() of the last confirmed renewal

    def _params(self, **extra: object) -> dict[str, object]:
        return {"holder": self.holder, "ttl": self.ttl_s, "order_id": self.order_id, **extra}

    def _take(self, key: str, *, bump: bool) -> bool:
        row = single_statement(_TAKE, self._params(key=key, bump=bump))
        if not (row and row["taken"]):
            return False
        self.keys.append(key)
        if bump:
            if row["fence"] is None:
                self.release()
                raise LookupError(f"no order with id {self.order_id}")
            self.token = int(row["fence"])
        self._renewed_at = time.monotonic()
        return True

    def try_add(self, key: str) -> bool:
        """Lease one more key of the same order (e.g. the GID once resolved)."""
        if key in self.keys:
            return True
        return self._take(key, bump=False)

    def check(self) -> None:
        """Renew every lease and raise ``LostLock`` unless this holder still owns the order: all of
        its leases are still its own and no newer holder has bumped the fence."""
        try:
            row = single_statement(_RENEW, self._params(keys=self.keys))
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            # Postgres is unreachable: we cannot know the lease is still ours, so we must not send.
            raise LostLock(f"order {self.order_id}: cannot renew its lease ({type(exc).__name__})") from exc
        assert row is not None
        if int(row["held"]) != len(self.keys):
            raise LostLock(f"order {self.order_id}: its lease expired and was taken over")
        if row["fence"] is None or int(row["fence"]) != self.token:
            raise LostLock(f"order {self.order_id}: fence is {row['fence']}, this holder has {self.token}")
        self._renewed_at = time.monotonic()
        if self.on_renew is not None:
            self.on_renew()

    def guard(self, mutation: bool) -> None:
        """Called before every Shopify request: a mutation is only sent by a confirmed owner; a
        read renews the lease once it has run a third of its time."""
        if mutation or time.monotonic() - self._renewed_at > self.ttl_s / 3:
            self.check()

    def release(self) -> None:
        if not self.keys:
            return
        try:
            single_statement(_RELEASE, self._params(keys=self.keys))
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            # Postgres is away (a restart): the lease would block its order for a whole TTL. Keep
            # it and release it as soon as this process reaches Postgres again.
            log.warning("could not release the lease of order %s; releasing it later", self.order_id)
            with _leftovers_lock:
                _leftovers.append((self.holder, list(self.keys)))
        self.keys = []

    def __enter__(self) -> OrderLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


_leftovers: list[tuple[str, list[str]]] = []  # (holder, keys) whose release did not reach Postgres
_leftovers_lock = threading.Lock()


def release_leftovers() -> int:
    """Release the leases this process could not release while Postgres was away; returns how
    many were released (one that expired and was taken over meanwhile is simply not ours)."""
    with _leftovers_lock:
        pending = list(_leftovers)
        _leftovers.clear()
    released, failed = 0, []
    for holder, keys in pending:
        try:
            single_statement(_RELEASE, {"holder": holder, "keys": keys})
            released += 1
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            failed.append((holder, keys))
    if failed:
        with _leftovers_lock:
            _leftovers.extend(failed)
    return released


def try_lock_order(
    key: str, order_id: int, *, ttl_s: float | None = None, on_renew: Callable[[], None] | None = None
) -> OrderLock | None:
    """Take the order's lease without waiting; None when another worker holds it."""
    if _leftovers:
        release_leftovers()
    lock = OrderLock(order_id, ttl_s=ttl_s, on_renew=on_renew)
    return lock if lock._take(key, bump=True) else None
