"""The per-order lock: exclusive across threads and processes, released when its holder dies,
and fenced so a holder that lost it cannot write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workers.locking import LostLock, order_key, try_lock_order
from workers.store import returns as store
from workers.store.db import transaction
from workers.store.shops import register_shop

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def order_id(clean_db: str) -> int:
    shop = register_shop("lock-test.myshopify.com", "token")
    with transaction() as cur:
        cur.execute(
            "INSERT INTO orders (shop_id, order_ref, order_gid) VALUES (%s, 'gid://shopify/Order/1',"
            " 'gid://shopify/Order/1') RETURNING id",
            (shop.id,),
        )
        order = cur.fetchone()["id"]
        cur.execute(
            "INSERT INTO returns (shop_id, platform_return_id, order_id) VALUES (%s, 'R-1', %s)",
            (shop.id, order),
        )
    return order


def _return_id() -> int:
    with transaction() as cur:
        cur.execute("SELECT id FROM returns WHERE platform_return_id = 'R-1'")
        return cur.fetchone()["id"]


def test_key_is_the_order_gid_when_known_else_the_row():
    assert order_key("a.myshopify.com", "gid://shopify/Order/7", 3) == "a.myshopify.com:gid://shopify/Order/7"
    assert order_key("a.myshopify.com", None, 3) == "a.myshopify.com:row:3"


def test_a_second_holder_is_refused_until_the_first_releases(order_id: int):
    key = order_key("lock-test.myshopify.com", "gid://shopify/Order/1", order_id)
    first = try_lock_order(key, order_id)
    assert first is not None
    assert try_lock_order(key, order_id) is None
    first.release()
    second = try_lock_order(key, order_id)
    assert second is not None
    # Each acquisition gets a newer fencing token.
    assert second.token == first.token + 1
    second.release()


def test_a_killed_process_releases_the_lock_at_once(order_id: int):
    # Given another process holds the order's lock
    key = order_key("lock-test.myshopify.com", "gid://shopify/Order/1", order_id)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from workers.locking import try_lock_order
            lock = try_lock_order({key!r}, {order_id})
            print("held" if lock else "busy", flush=True)
            time.sleep(300)
        """),
        ],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert try_lock_order(key, order_id) is None
        # When it dies without releasing anything
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
    # Then the server has ended its session and the lock is free
    lock = None
    for _ in range(50):  # the server notices the closed socket right away; allow it a moment
        lock = try_lock_order(key, order_id)
        if lock is not None:
            break
    assert lock is not None
    lock.release()


def test_a_holder_whose_lock_was_taken_over_cannot_write(order_id: int):
    key = order_key("lock-test.myshopify.com", "gid://shopify/Order/1", order_id)
    stale = try_lock_order(key, order_id)
    assert stale is not None
    return_id = _return_id()
    # Given its session dropped (the lock is gone) and another worker took the order over
    stale.release()
    current = try_lock_order(key, order_id)
    assert current is not None
    # When the stale holder writes, nothing is written
    with pytest.raises(LostLock):
        store.finish_return(
            order_id, stale.token, return_id, sync="synced", detail="stale", event_statuses={}
        )
    with pytest.raises(LostLock):
        store.set_mapping(
            order_id,
            stale.token,
            return_id,
            shopify_return_gid="gid://shopify/Return/9",
            shopify_status="OPEN",
        )
    with transaction() as cur:
        cur.execute("SELECT sync, detail, shopify_return_gid FROM returns WHERE id = %s", (return_id,))
        assert dict(cur.fetchone()) == {"sync": "pending", "detail": None, "shopify_return_gid": None}
    # While the current holder's writes go through
    store.finish_return(order_id, current.token, return_id, sync="synced", detail=None, event_statuses={})
    current.release()


def test_a_second_key_on_the_same_session_can_be_refused(order_id: int):
    lock = try_lock_order("s:row:1", order_id)
    other = try_lock_order("s:gid", order_id)
    assert lock is not None and other is not None
    assert lock.try_add("s:gid") is False  # another worker holds the GID: the caller backs off
    other.release()
    assert lock.try_add("s:gid") is True
    lock.release()


def test_a_holder_learns_it_lost_the_lock_before_its_next_shopify_mutation(order_id: int):
    # Given a holder whose session the server terminated (what a Postgres restart does)
    lock = try_lock_order("lock-test.myshopify.com:gid://shopify/Order/1", order_id)
    assert lock is not None
    lock.check()  # still the owner: no error
    with lock._conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    with transaction() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (backend,))
    # When it checks before sending a mutation, Then it is told it lost the lock
    with pytest.raises(LostLock):
        lock.check()
    lock.release()


def test_a_holder_that_was_fenced_out_fails_its_check(order_id: int):
    # Given a holder, and a newer holder's fence bump (its lock was freed and taken over)
    lock = try_lock_order("lock-test.myshopify.com:gid://shopify/Order/1", order_id)
    assert lock is not None
    with transaction() as cur:
        cur.execute("UPDATE orders SET fence = fence + 1 WHERE id = %s", (order_id,))
    # Then the old holder's check refuses to let it write to Shopify
    with pytest.raises(LostLock, match="fence"):
        lock.check()
    lock.release()
