"""The sync reports what it does to Prometheus as it does it: an applied event is counted and timed,
every Shopify exchange is counted by operation and outcome, a busy order and a wait for the shop's
budget are counted. Read back from this process's metrics files, as GET /metrics reads them."""

from __future__ import annotations

from config import get_settings
from tests.apply.conftest import ShopUnderTest
from tests.observability.conftest import Samples, scrape_dir, value
from workers.apply import apply_order
from workers.locking import order_key, try_lock_order

ITEMS_ONE = {101: 1}


def scrape() -> Samples:
    return scrape_dir(get_settings().prometheus_multiproc_dir)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def test_an_applied_event_and_its_shopify_calls_are_counted(shop: ShopUnderTest):
    before = scrape()
    gid = shop.order("#9101", ITEMS_ONE)
    order_id = shop.event("created", "R-M1", order_gid=gid, items=ITEMS_ONE, tracking="TRK-M1")
    assert apply_order(order_id).outcome == "applied"
    after = scrape()

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("returnsync_events_applied_total", shop=shop.domain, type="return.created") == 1
    assert grew("returnsync_accepted_to_applied_seconds_count", shop=shop.domain) == 1
    calls = {
        dict(labels)["operation"]: v - (before.get((name, labels)) or 0)
        for (name, labels), v in after.items()
        if name == "returnsync_shopify_calls_total" and dict(labels).get("shop") == shop.domain
    }
    # One read, the create, then tracking, tag and the rest together: as the stand-in saw them.
    seen = [c["operation"] for c in shop.admin.calls(shop.domain)]
    assert sum(calls.values()) == len(seen)
    assert {op for op, n in calls.items() if n} == set(seen)
    assert value(after, "returnsync_shopify_call_seconds_count", operation=seen[0]) is not None


def test_a_busy_order_and_a_spent_budget_are_counted(shop: ShopUnderTest):
    gid = shop.order("#9102", ITEMS_ONE)
    order_id = shop.event("created", "R-M2", order_gid=gid, items=ITEMS_ONE)
    before = scrape()
    held = try_lock_order(order_key(shop.domain, gid, order_id), order_id)
    assert held is not None
    try:
        assert apply_order(order_id).outcome == "busy"
    finally:
        held.release()
    assert total(scrape(), "returnsync_lock_waits_total") == total(before, "returnsync_lock_waits_total") + 1
    # A bucket of 5 points refilling 1 a second cannot take a mutation without a long wait.
    shop.admin.set_throttle(shop.domain, bucket_size=5, restore_rate=1)
    assert apply_order(order_id).outcome == "throttled"
    assert total(scrape(), "returnsync_throttle_waits_total", shop=shop.domain) >= 1
