"""The per-order lease: exclusive across threads and processes, taken over once a dead holder's
lease expires, and fenced so a holder that lost it can neither write nor reach Shopify."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from workers.locking import LostLock, order_key, try_lock_order
from workers.store import returns as store
from workers.store import snapshots
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


def _expire(order_id: int) -> None:
    """What the passing of a lease's TTL does, without waiting for it."""
    with transaction() as cur:
        cur.execute(
            "UPDATE order_leases SET expires_at = now() - interval '1 second' WHERE order_id = %s",
            (order_id,),
        )


def test_a_killed_holder_is_taken_over_once_its_lease_expires(order_id: int):
    # Given another process holds the order's lease for 3 s and dies without releasing it
    key = order_key("lock-test.myshopify.com", "gid://shopify/Order/1", order_id)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from workers.locking import try_lock_order
            lock = try_lock_order({key!r}, {order_id}, ttl_s=3)
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
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
    # Then the order stays locked while the lease runs...
    assert try_lock_order(key, order_id) is None
    # ...and is free once it has run out (Postgres' clock decides; poll past the 3 s)
    lock = None
    for _ in range(100):
        lock = try_lock_order(key, order_id)
        if lock is not None:
            break
        time.sleep(0.1)
    assert lock is not None
    lock.release()


def test_a_holder_that_renews_keeps_its_lease(order_id: int):
    key = order_key("lock-test.myshopify.com", "gid://shopify/Order/1", order_id)
    lock = try_lock_order(key, order_id, ttl_s=30)
    assert lock is not None
    with transaction() as cur:  # the lease is about to run out...
        cur.execute("UPDATE order_leases SET expires_at = now() + interval '1 second'")
    lock.guard(mutation=True)  # ...when the holder sends a mutation, which renews it
    with transaction() as cur:
        cur.execute("SELECT expires_at - now() AS left FROM order_leases WHERE key = %s", (key,))
        assert cur.fetchone()["left"].total_seconds() > 20
    lock.release()


def test_reads_renew_only_once_a_third_of_the_lease_has_passed(order_id: int):
    key = "lock-test.myshopify.com:gid://shopify/Order/1"
    lock = try_lock_order(key, order_id, ttl_s=30)
    assert lock is not None
    _expire(order_id)
    other = try_lock_order(key, order_id)  # taken over behind its back; only a renewal can notice
    assert other is not None
    lock.guard(mutation=False)  # a fresh lease: a read goes ahead without a round trip
    lock._renewed_at -= 11
    with pytest.raises(LostLock, match="expired"):
        lock.guard(mutation=False)
    other.release()


def test_a_lease_is_held_without_holding_a_postgres_connection(order_id: int):
    with transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()")
        before = cur.fetchone()["n"]
    locks = [try_lock_order(f"lock-test.myshopify.com:key-{n}", order_id) for n in range(20)]
    assert all(locks)
    with transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()")
        assert cur.fetchone()["n"] <= before + 1
    for lock in locks:
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
    with pytest.raises(LostLock):
        store.set_note_appended(order_id, stale.token, return_id)
    with pytest.raises(LostLock):
        snapshots.save(order_id, stale.token, {"gid": "stale"}, next_run_at=store.db_now())
    with pytest.raises(LostLock):
        snapshots.carry(order_id, stale.token, next_run_at=store.db_now())
    with transaction() as cur:
        cur.execute(
            "SELECT sync, detail, shopify_return_gid, note_appended FROM returns WHERE id = %s", (return_id,)
        )
        assert dict(cur.fetchone()) == {
            "sync": "pending",
            "detail": None,
            "shopify_return_gid": None,
            "note_appended": False,
        }
        cur.execute("SELECT snapshot, next_run_at FROM orders WHERE id = %s", (order_id,))
        assert dict(cur.fetchone()) == {"snapshot": None, "next_run_at": None}
    # While the current holder's writes go through
    store.set_mapping(
        order_id, current.token, return_id, shopify_return_gid="gid://shopify/Return/9", shopify_status="OPEN"
    )
    store.set_note_appended(order_id, current.token, return_id)
    store.finish_return(order_id, current.token, return_id, sync="synced", detail=None, event_statuses={})
    snapshots.save(order_id, current.token, {"gid": "current"}, next_run_at=None)
    assert snapshots.trusted(order_id, current.token + 1) == {"gid": "current"}
    with transaction() as cur:
        cur.execute("SELECT sync, shopify_return_gid, note_appended FROM returns WHERE id = %s", (return_id,))
        assert dict(cur.fetchone()) == {
            "sync": "synced",
            "shopify_return_gid": "gid://shopify/Return/9",
            "note_appended": True,
        }
    current.release()


def test_a_second_key_on_the_same_session_can_be_refused(order_id: int):
    lock = try_lock_order("s:row:1", order_id)
    other = try_lock_order("s:gid", order_id)
    assert lock is not None and other is not None
    assert lock.try_add("s:gid") is False  # another worker holds the GID: the caller backs off
    other.release()
    assert lock.try_add("s:gid") is True
    lock.release()


def test_a_holder_whose_lease_expired_and_was_taken_cannot_send_a_mutation(order_id: int):
    # Given a holder that stalled past its lease, and another worker that took the order over
    key = "lock-test.myshopify.com:gid://shopify/Order/1"
    lock = try_lock_order(key, order_id)
    assert lock is not None
    lock.check()  # still the owner: no error
    _expire(order_id)
    other = try_lock_order(key, order_id)
    assert other is not None
    # When the stalled one checks before sending a mutation, Then it is told it lost the lock
    with pytest.raises(LostLock):
        lock.guard(mutation=True)
    # and its release does not free the new holder's lease
    lock.release()
    assert try_lock_order(key, order_id) is None
    other.release()


def test_a_holder_that_cannot_reach_postgres_does_not_send(order_id: int, monkeypatch: pytest.MonkeyPatch):
    import psycopg2

    import workers.locking as locking

    lock = try_lock_order("lock-test.myshopify.com:gid://shopify/Order/1", order_id)
    assert lock is not None

    def unreachable(*args: object) -> None:
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(locking, "single_statement", unreachable)
    with pytest.raises(LostLock, match="cannot renew"):
        lock.guard(mutation=True)
    monkeypatch.undo()
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


def test_a_lease_that_could_not_be_released_in_a_postgres_outage_is_released_once_it_is_back(
    order_id: int, monkeypatch: pytest.MonkeyPatch
):
    import psycopg2

    import workers.locking as locking

    key = order_key("lock-test.myshopify.com", "gid://shopify/Order/1", order_id)
    lock = try_lock_order(key, order_id, ttl_s=3600)
    assert lock is not None

    def unreachable(*args: object) -> None:
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    # Given the run ends while Postgres restarts: its release cannot reach it
    monkeypatch.setattr(locking, "single_statement", unreachable)
    lock.release()
    monkeypatch.undo()
    with transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM order_leases WHERE order_id = %s", (order_id,))
        assert cur.fetchone()["n"] == 1  # still leased, for an hour
    # When this process next takes a lease (Postgres is back), the order is free at once
    other = try_lock_order(key, order_id)
    assert other is not None
    other.release()
