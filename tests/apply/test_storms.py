"""Storms through real Celery worker processes: Shopify throttling everything, Shopify failing a
third of its requests. Every order still converges, with exactly one Shopify return each."""

from __future__ import annotations

from typing import Any

from tests.apply.conftest import ShopUnderTest, wait_until
from workers.store.db import transaction

ORDERS = 10


def _send_lifecycles(shop: ShopUnderTest) -> list[str]:
    """Ten orders, each with a created and a completed event, queued the way ingest queues them."""
    from workers.doorbell import ring as enqueue_order

    gids = []
    for n in range(ORDERS):
        gid = shop.order(f"#S{n}", {500 + n: 1})
        gids.append(gid)
        for minutes, event_type in enumerate(("created", "completed")):
            order_id = shop.event(
                event_type,
                f"R-storm-{n}",
                order_gid=gid,
                items={500 + n: 1},
                minutes=minutes,
                tracking=f"TRK{n}",
            )
            assert enqueue_order(order_id)
    return gids


def _all_synced() -> bool:
    with transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM returns WHERE sync = 'synced' AND applied_state = 'completed'")
        return cur.fetchone()["n"] == ORDERS


def _unsynced() -> list[dict[str, Any]]:
    """What did not converge, for the failure message."""
    with transaction() as cur:
        cur.execute(
            "SELECT r.platform_return_id, r.sync, r.applied_state, r.detail, r.failures,"
            " (SELECT string_agg(a.outcome || ': ' || coalesce(a.detail, ''), ' | ' ORDER BY a.id)"
            "  FROM attempts a WHERE a.order_id = r.order_id) AS attempts"
            " FROM returns r WHERE NOT (sync = 'synced' AND applied_state = 'completed')"
        )
        return [dict(row) for row in cur.fetchall()]


def _one_closed_return_per_order(shop: ShopUnderTest, gids: list[str]) -> dict[str, Any]:
    returns = shop.shopify_returns()
    return {gid: sorted(r["status"] for r in returns if r["orderId"] == gid) for gid in gids}


def test_a_throttling_storm_slows_the_sync_but_loses_and_duplicates_nothing(
    shop: ShopUnderTest, celery_workers
):
    # Given a shop whose bucket holds a few lifecycles and refills slowly
    shop.admin.set_throttle(shop.domain, bucket_size=300, restore_rate=60)
    # When ten lifecycles are queued at once to two worker processes
    gids = _send_lifecycles(shop)
    # Then all of them end synced (bounded wait), each order with one CLOSED return
    assert wait_until(_all_synced, timeout_s=240, interval_s=0.5), _unsynced()
    assert _one_closed_return_per_order(shop, gids) == {gid: ["CLOSED"] for gid in gids}
    # and the budget held the workers back on the way (the storm was real): runs handed back to
    # wait for the bucket, or Shopify's own THROTTLED answers before the shared budget knew it
    with transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM attempts WHERE outcome = 'throttled'")
        handed_back = cur.fetchone()["n"]
    throttled = sum(1 for call in shop.admin.calls(shop.domain) if call["throttled"])
    assert handed_back + throttled > 0


def test_a_5xx_storm_is_retried_through_without_duplicate_returns(shop: ShopUnderTest, celery_workers):
    # Given Shopify answering 30% of requests with a 5xx (seeded, so the run is reproducible)
    shop.admin.set_faults(shop.domain, error_rate=0.3, seed=1234)
    # When ten lifecycles are queued
    gids = _send_lifecycles(shop)
    # Then every order converges with exactly one CLOSED return
    assert wait_until(_all_synced, timeout_s=240, interval_s=0.5), _unsynced()
    assert _one_closed_return_per_order(shop, gids) == {gid: ["CLOSED"] for gid in gids}
    assert any(call["status"] >= 500 for call in shop.admin.calls(shop.domain))
