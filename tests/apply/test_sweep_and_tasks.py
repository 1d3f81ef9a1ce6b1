"""Redis is the doorbell, Postgres the truth: the sweep re-rings what Redis lost; real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from config import get_settings
from tests.apply.conftest import ShopUnderTest, event_statuses, return_row, wait_until
from workers import sweep as sweeping
from workers.apply import apply_order
from workers.doorbell import dispatch
from workers.relay import relay_once
from workers.store import returns as store
from workers.store.db import transaction

ROOT = Path(__file__).resolve().parents[2]
ITEMS = {101: 1}


def _queued_order_ids(redis_client) -> list[int]:
    """Order ids of the apply_order messages waiting in the returns queue (kombu keeps one Redis
    list per priority step, named after the queue)."""
    ids = []
    for key in redis_client.scan_iter(match="returns*"):
        if redis_client.type(key) != b"list":
            continue
        for raw in redis_client.lrange(key, 0, -1):
            message = json.loads(raw)
            assert message["headers"]["task"] == "returns.apply_order"
            ids.append(int(message["headers"]["argsrepr"].strip("(),")))
    return sorted(ids)


def test_enqueue_rings_the_doorbell_and_marks_the_events(shop: ShopUnderTest, redis_client):
    from workers.doorbell import ring as enqueue_order

    gid = shop.order("#5001", ITEMS)
    order_id = shop.event("created", "R-1", order_gid=gid, items=ITEMS)
    assert enqueue_order(order_id) is True
    assert _queued_order_ids(redis_client) == [order_id]
    with transaction() as cur:
        cur.execute("SELECT enqueued_at FROM events WHERE order_id = %s", (order_id,))
        assert cur.fetchone()["enqueued_at"] is not None


def test_enqueue_returns_false_when_redis_is_down(shop: ShopUnderTest):
    gid = shop.order("#5002", ITEMS)
    order_id = shop.event("created", "R-2", order_gid=gid, items=ITEMS)
    # Given a process whose broker nobody listens on
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"}
    code = f"from workers.doorbell import ring; print(ring({order_id}))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    # Then enqueueing says so instead of raising, and leaves the events for the sweep
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
    with transaction() as cur:
        cur.execute("SELECT enqueued_at FROM events WHERE order_id = %s", (order_id,))
        assert cur.fetchone()["enqueued_at"] is None
    assert order_id in store.due_orders(store.db_now(), get_settings().sweep_after_s)


def test_sweep_re_enqueues_what_redis_lost(shop: ShopUnderTest, redis_client):
    from workers.doorbell import ring as enqueue_order

    gid = shop.order("#5003", ITEMS)
    order_id = shop.event("created", "R-3", order_gid=gid, items=ITEMS)
    assert enqueue_order(order_id)
    # Given Redis lost every message
    redis_client.flushdb()
    # When the sweep runs before the events are stale, it leaves them alone
    now = store.db_now()
    assert sweeping.sweep(enqueue_order, now=now) == 0
    # And once they are older than sweep_after_s it rings the order again
    later = now + timedelta(seconds=get_settings().sweep_after_s + 1)
    assert sweeping.sweep(enqueue_order, now=later) == 1
    assert _queued_order_ids(redis_client) == [order_id]


def test_sweep_rings_waiting_orders_when_due_and_never_finished_ones(shop: ShopUnderTest, redis_client):
    waiting_gid = shop.order("#5004", ITEMS, fulfilled=False)
    waiting = shop.event("created", "R-4", order_gid=waiting_gid, items=ITEMS)
    done_gid = shop.order("#5005", ITEMS)
    done = shop.event("created", "R-5", order_gid=done_gid, items=ITEMS)
    assert apply_order(waiting).outcome == "waiting"
    assert apply_order(done).outcome == "applied"
    now = store.db_now()
    assert store.due_orders(now, 0) == []  # waiting is not due yet, applied never is
    due_at = now + timedelta(seconds=get_settings().waiting_retry_s + 1)
    assert store.due_orders(due_at, 0) == [waiting]
    # An event accepted but never enqueued (Redis was down at ingest) is due at once.
    fresh = shop.event("created", "R-6", order_gid=shop.order("#5006", ITEMS), items=ITEMS)
    assert sorted(store.due_orders(now, 3600)) == [fresh]


def test_replay_task_resets_failed_events_and_leaves_them_for_the_relay(shop: ShopUnderTest, redis_client):
    from tasks.returns import replay

    gid = shop.order("#5007", ITEMS)
    order_id = shop.event("created", "R-7", order_gid=gid, items=ITEMS, event_id="f7")
    with transaction() as cur:
        cur.execute("UPDATE events SET status = 'failed' WHERE event_id = 'f7'")
        cur.execute("UPDATE returns SET sync = 'failed', detail = 'gave up' WHERE platform_return_id = 'R-7'")
    assert replay.run(order_id) == 1
    assert event_statuses(order_id) == {"f7": "accepted"}
    assert return_row("R-7")["sync"] == "pending"
    # The reset events are unrung outbox entries: the relay's next round rings the order.
    assert relay_once() == (1, True)
    dispatch()
    assert _queued_order_ids(redis_client) == [order_id]


def test_real_celery_workers_apply_an_enqueued_order(shop: ShopUnderTest, celery_workers, redis_client):
    from workers.doorbell import ring as enqueue_order

    # Given two worker processes consuming the returns queue
    gid = shop.order("#5008", ITEMS)
    order_id = shop.event("created", "R-8", order_gid=gid, items=ITEMS, tracking="CEL1")
    shop.event("completed", "R-8", order_gid=gid, items=ITEMS, minutes=30)
    # When the order's doorbell rings (twice: duplicates are normal)
    assert enqueue_order(order_id) and enqueue_order(order_id)
    # Then a worker applies it on Shopify (bounded wait, not a speed assertion)
    applied = wait_until(lambda: set(event_statuses(order_id).values()) <= {"applied", "superseded"}, 90)
    if not applied and celery_workers.poll() is not None:
        pytest.fail(Path(celery_workers.log_path).read_text())
    assert applied
    returns = shop.shopify_returns()
    assert [r["status"] for r in returns] == ["CLOSED"]
    assert return_row("R-8")["sync"] == "synced"


def test_a_worker_finding_the_order_locked_comes_back_and_applies_it(
    shop: ShopUnderTest, celery_workers, redis_client
):
    from workers.doorbell import ring as enqueue_order
    from workers.locking import order_key, try_lock_order

    gid = shop.order("#5009", ITEMS)
    order_id = shop.event("created", "R-9", order_gid=gid, items=ITEMS)
    # Given another holder (say a stuck worker elsewhere) has the order's lock
    held = try_lock_order(order_key(shop.domain, gid, order_id), order_id)
    assert held is not None
    try:
        assert enqueue_order(order_id)
        # The workers are turned away while it holds the lock: nothing reaches Shopify
        assert not wait_until(lambda: bool(shop.shopify_returns()), 3)
    finally:
        held.release()
    # When the lock is free, the run that came back (due after order_lock_retry_s) applies it
    assert wait_until(lambda: set(event_statuses(order_id).values()) == {"applied"}, 90)
    assert [r["status"] for r in shop.shopify_returns()] == ["OPEN"]
