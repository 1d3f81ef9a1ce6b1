"""Waiting work on a growing schedule (the sweep), and the end of the wait at the shop's horizon
(the beat task reconcile.expire_waiting), against the stand-in."""

from __future__ import annotations

from datetime import datetime, timedelta

from config import get_settings
from tests.apply.conftest import ShopUnderTest, event_statuses, return_row
from workers import repair
from workers import sweep as sweeping
from workers.apply import apply_order
from workers.locking import order_key, try_lock_order
from workers.reconcile import horizon
from workers.store import beat_runs
from workers.store import returns as store
from workers.store.db import transaction
from workers.store.shops import register_shop

ITEMS = {101: 1}


def _waiting_order(shop: ShopUnderTest, name: str, return_id: str) -> int:
    """An order not fulfilled yet whose return the run parked (the relay had rung it)."""
    gid = shop.order(name, ITEMS, fulfilled=False)
    order_id = shop.event("created", return_id, order_gid=gid, items=ITEMS)
    with transaction() as cur:
        cur.execute("UPDATE events SET enqueued_at = now() WHERE order_id = %s", (order_id,))
    assert apply_order(order_id).outcome == "waiting"
    return order_id


def _set_clock(order_id: int, *, waiting_since: datetime, rung_at: datetime, next_run_at: datetime) -> None:
    with transaction() as cur:
        cur.execute("UPDATE returns SET waiting_since = %s WHERE order_id = %s", (waiting_since, order_id))
        cur.execute("UPDATE events SET enqueued_at = %s WHERE order_id = %s", (rung_at, order_id))
        cur.execute("UPDATE orders SET next_run_at = %s WHERE id = %s", (next_run_at, order_id))


def test_a_return_rung_on_a_doubling_schedule_capped_at_the_setting(shop: ShopUnderTest):
    order_id = _waiting_order(shop, "#7001", "R-1")
    settings = get_settings()
    base, cap = settings.waiting_retry_s, settings.waiting_retry_cap_s
    start = store.db_now()
    _set_clock(order_id, waiting_since=start, rung_at=start, next_run_at=start + timedelta(seconds=base))
    rings: list[datetime] = []

    def ring(rung: int) -> bool:
        # What a ring and the run it causes leave behind: the events rung now, the order due again
        # after WAITING_RETRY_S (the run's own next_run_at).
        assert rung == order_id
        rings.append(now)
        with transaction() as cur:
            cur.execute("UPDATE events SET enqueued_at = %s WHERE order_id = %s", (now, order_id))
            cur.execute(
                "UPDATE orders SET next_run_at = %s WHERE id = %s", (now + timedelta(seconds=base), order_id)
            )
        return True

    # When the sweep runs every minute for 30 hours of the database's clock
    step = timedelta(seconds=60)
    for minute in range(1, 30 * 60 + 1):
        now = start + minute * step
        sweeping.sweep(ring, now=now)

    # Then each look comes after as long again as the return had waited (5, 10, 20, 40 minutes...),
    # at most WAITING_RETRY_CAP_S apart
    expected, age = [], 0.0
    while age + min(cap, max(base, age)) <= 30 * 3600:
        age += min(cap, max(base, age))
        expected.append(age)
    assert [(rung - start).total_seconds() for rung in rings] == expected
    gaps = [later - earlier for earlier, later in zip([0.0, *expected], expected, strict=False)]
    assert gaps[:4] == [base, base, 2 * base, 4 * base] and gaps[-1] == cap, gaps
    # ...instead of once every WAITING_RETRY_S (360 looks in 30 hours)
    assert len(rings) == len(expected) < 15


def test_a_return_waiting_long_is_rung_less_often_than_a_fresh_one(shop: ShopUnderTest):
    fresh = _waiting_order(shop, "#7002", "R-2")
    old = _waiting_order(shop, "#7003", "R-3")
    now = store.db_now()
    # Given a return waiting 10 minutes, rung 5 minutes ago, and one waiting 3 hours, rung 1 hour ago
    _set_clock(
        fresh, waiting_since=now - timedelta(minutes=10), rung_at=now - timedelta(minutes=5), next_run_at=now
    )
    _set_clock(old, waiting_since=now - timedelta(hours=3), rung_at=now - timedelta(hours=1), next_run_at=now)
    settings = get_settings()

    def due(at: datetime) -> list[int]:
        return store.due_orders_backing_off(
            at, settings.sweep_after_s, settings.waiting_retry_s, settings.waiting_retry_cap_s
        )

    # Then the fresh one is due again now, the old one only 2 hours after its last ring
    assert due(now) == [fresh]
    assert due(now + timedelta(minutes=59)) == [fresh]
    assert due(now + timedelta(minutes=61)) == sorted([fresh, old])
    # And the run's own next_run_at still counts: neither is due before it
    with transaction() as cur:
        cur.execute("UPDATE orders SET next_run_at = %s", (now + timedelta(hours=3),))
    assert due(now + timedelta(minutes=61)) == []
    # While accepted work is rung as before: at once when never rung
    new = shop.event("created", "R-4", order_gid=shop.order("#7004", ITEMS), items=ITEMS)
    assert due(now) == [new]


def test_over_the_horizon_a_waiting_return_fails_with_the_reason_and_can_be_replayed(shop: ShopUnderTest):
    register_shop(shop.domain, shop.token, api_url=shop.row.api_url, waiting_horizon_s=3600)
    order_id = _waiting_order(shop, "#7005", "R-5")
    keeps_waiting = _waiting_order(shop, "#7006", "R-6")
    with transaction() as cur:
        cur.execute(
            "UPDATE returns SET waiting_since = now() - interval '2 hours' WHERE order_id = %s", (order_id,)
        )
        cur.execute(
            "UPDATE returns SET waiting_since = now() - interval '30 minutes' WHERE order_id = %s",
            (keeps_waiting,),
        )

    # When the beat task runs (as the worker runs it: logged in beat_runs)
    from tasks.reconcile import expire_waiting

    assert expire_waiting.run() == {"found": 1, "expired": 1, "busy": 0}

    # Then the return is failed with the run's own format, and its events with it
    row = return_row("R-5")
    assert row["sync"] == "failed"
    assert (
        row["detail"] == f"order not fulfilled yet after waiting {3600 / 86400:g} days (replay to try again)"
    )
    assert row["detail"] == horizon.horizon_detail("order not fulfilled yet", 3600)
    assert set(event_statuses(order_id).values()) == {"failed"}
    assert return_row("R-6")["sync"] == "waiting"
    assert [run.outcome for run in beat_runs.runs("reconcile.expire_waiting")][-1] == "done"
    # And a second run finds nothing more to do
    assert horizon.expire_waiting() == {"found": 0, "expired": 0, "busy": 0}
    # And a replay starts the wait again, as the detail says
    assert repair.replay(order_id) == 1
    assert return_row("R-5")["sync"] == "pending"


def test_a_wait_for_a_reinstall_ends_at_the_horizon_too(shop: ShopUnderTest):
    register_shop(shop.domain, shop.token, api_url=shop.row.api_url, waiting_horizon_s=3600)
    shop.admin.set_scopes(shop.domain, shop.token, ["read_orders", "write_orders"])
    gid = shop.order("#7007", ITEMS)
    order_id = shop.event("created", "R-7", order_gid=gid, items=ITEMS)
    assert apply_order(order_id).outcome == "waiting"
    reason = return_row("R-7")["detail"]
    assert reason.startswith("shop needs reinstall: missing scopes read_returns, write_returns")
    with transaction() as cur:
        cur.execute("UPDATE returns SET waiting_since = now() - interval '2 hours'")
    assert horizon.expire_waiting()["expired"] == 1
    row = return_row("R-7")
    assert (row["sync"], row["detail"]) == ("failed", horizon.horizon_detail(reason, 3600))


def test_the_horizon_waits_for_the_order_lock_and_leaves_new_work_alone(shop: ShopUnderTest):
    register_shop(shop.domain, shop.token, api_url=shop.row.api_url, waiting_horizon_s=3600)
    order_id = _waiting_order(shop, "#7008", "R-8")
    with transaction() as cur:
        cur.execute("UPDATE returns SET waiting_since = now() - interval '2 hours'")
    order = store.load_order(order_id)
    assert order is not None
    # Given a worker holding the order
    held = try_lock_order(order_key(shop.domain, order.order_gid, order.id), order.id)
    assert held is not None
    with held:
        # Then the return is left for the next run, untouched
        assert horizon.expire_waiting() == {"found": 1, "expired": 0, "busy": 1}
        assert return_row("R-8")["sync"] == "waiting"
    # Once the worker is done, the next run ends the wait under the lock
    assert horizon.expire_waiting() == {"found": 1, "expired": 1, "busy": 0}
    assert return_row("R-8")["sync"] == "failed"


def test_the_horizon_leaves_a_return_with_new_work_to_the_run(shop: ShopUnderTest):
    register_shop(shop.domain, shop.token, api_url=shop.row.api_url, waiting_horizon_s=3600)
    order_id = _waiting_order(shop, "#7009", "R-9")
    with transaction() as cur:
        cur.execute("UPDATE returns SET waiting_since = now() - interval '2 hours'")
    # Given a new event of the waiting return accepted since (the platform cancelled it)
    order = store.load_order(order_id)
    assert order is not None
    shop.event("cancelled", "R-9", order_gid=order.order_gid, items=ITEMS, minutes=30)
    # Then the horizon leaves it, and the run applies the cancel (nothing was on Shopify)
    assert horizon.expire_waiting() == {"found": 0, "expired": 0, "busy": 0}
    assert apply_order(order_id).outcome == "applied"
    assert return_row("R-9")["sync"] == "synced"
