"""Events of one order never apply concurrently, across threads and across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from tests.apply.conftest import ShopUnderTest, event_statuses
from workers.apply import apply_order
from workers.store.db import transaction

ROOT = Path(__file__).resolve().parents[2]
ITEMS = {101: 1}


def _attempt_intervals(order_id: int) -> list[tuple]:
    with transaction() as cur:
        cur.execute(
            "SELECT started_at, finished_at FROM attempts WHERE order_id = %s AND outcome <> 'replay'"
            " ORDER BY started_at",
            (order_id,),
        )
        return [(row["started_at"], row["finished_at"]) for row in cur.fetchall()]


def _assert_never_overlapped(order_id: int) -> None:
    intervals = _attempt_intervals(order_id)
    assert intervals, "no run took the lock"
    for (_, end), (start, _) in zip(intervals, intervals[1:], strict=False):
        assert end is not None and end <= start, intervals


def _seed(shop: ShopUnderTest, name: str) -> tuple[str, int]:
    gid = shop.order(name, {101: 1, 102: 1})
    order_id = shop.event("created", f"R{name[1:]}-a", order_gid=gid, items={101: 1}, tracking="T-a")
    shop.event("created", f"R{name[1:]}-b", order_gid=gid, items={102: 1}, minutes=1, tracking="T-b")
    # Slow Shopify answers widen the window in which two runs could overlap.
    shop.admin.set_faults(shop.domain, latency_ms=20)
    return gid, order_id


def test_threads_applying_the_same_order_never_overlap(shop: ShopUnderTest):
    gid, order_id = _seed(shop, "#4001")
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        outcomes.append(apply_order(order_id).outcome)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert "busy" in outcomes  # they did collide, and the lock turned the others away
    shop.admin.set_faults(shop.domain)
    apply_order(order_id)  # whatever the busy ones would have retried
    _assert_never_overlapped(order_id)
    assert len(shop.shopify_returns()) == 2  # one per platform return, none duplicated
    tracking = sorted(
        d["trackingNumber"]
        for r in shop.shopify_returns()
        for rfo in r["reverseFulfillmentOrders"]
        for d in rfo["reverseDeliveries"]
    )
    assert tracking == ["T-a", "T-b"]
    assert set(event_statuses(order_id).values()) == {"applied"}


def test_processes_applying_the_same_order_never_overlap(shop: ShopUnderTest):
    gid, order_id = _seed(shop, "#4002")
    code = (
        "import sys\n"
        "from workers.apply import apply_order\n"
        "sys.stdin.readline()\n"  # start together
        f"print(apply_order({order_id}).outcome, flush=True)\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=os.environ.copy(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    kinds = [proc.communicate(timeout=120)[0].strip() for proc in procs]
    assert all(kind in {"applied", "busy", "idle"} for kind in kinds), kinds
    shop.admin.set_faults(shop.domain)
    apply_order(order_id)
    _assert_never_overlapped(order_id)
    assert len(shop.shopify_returns()) == 2
    assert set(event_statuses(order_id).values()) == {"applied"}


def test_two_order_rows_of_one_shopify_order_share_the_lock(shop: ShopUnderTest):
    # Given one return names the order by GID and another only by name: two order rows
    gid = shop.order("#4003", {101: 1, 102: 1})
    by_gid = shop.event("created", "R-g", order_gid=gid, items={101: 1})
    by_name = shop.event("created", "R-n", order_name="#4003", items={102: 1})
    assert by_gid != by_name
    # When both are applied, the one resolved by name locks on the same GID
    from workers.locking import order_key, try_lock_order

    held = try_lock_order(order_key(shop.domain, gid, by_gid), by_gid)
    assert held is not None
    try:
        assert apply_order(by_name).outcome == "busy"
    finally:
        held.release()
    assert apply_order(by_name).outcome == "applied"
    assert apply_order(by_gid).outcome == "applied"
    assert len(shop.shopify_returns()) == 2


def test_a_gevent_worker_builds_its_result_backend_once_not_per_greenlet():
    """Celery keeps a backend it does not know to be thread-safe per thread, and every greenlet is
    a thread: without the setting each task rebuilt it (a scan of every installed package's entry
    points) and a busy worker spent a sixth of its CPU there."""
    probe = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import gevent\n"
        "from tasks.app import app\n"
        "first = app.backend\n"
        "same = gevent.joinall([gevent.spawn(lambda: app.backend is first) for _ in range(5)])\n"
        "print(sum(g.value for g in same))\n"
    )
    env = {**os.environ, "RETURNSYNC_ENV": "local"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == "5", out.stderr
