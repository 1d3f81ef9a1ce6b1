"""Events in any order, duplicated, conflicting; several returns on one order (PRODUCT.md §3-4)."""

from __future__ import annotations

from tests.apply.conftest import ShopUnderTest, event_statuses, return_row
from workers.apply import apply_order
from workers.store.db import transaction

ITEMS = {101: 1}


def test_completed_before_created_creates_then_closes(shop: ShopUnderTest):
    # Given only the completed event has arrived (created is late)
    gid = shop.order("#2001", ITEMS)
    order_id = shop.event("completed", "R-1", order_gid=gid, items=ITEMS, minutes=60, tracking="T1")
    # When applied
    assert apply_order(order_id).outcome == "applied"
    # Then the return was created (with its decorations) and closed
    (ret,) = shop.shopify_returns()
    assert ret["status"] == "CLOSED"
    assert shop.shopify_order(gid)["tags"] == ["Sendcloud Return: Money back"]
    # And when the late created event arrives it is superseded and changes nothing
    late_id = "evt_late_created"
    shop.event("created", "R-1", order_gid=gid, items=ITEMS, minutes=5, event_id=late_id)
    before = shop.state()
    assert apply_order(order_id).outcome == "applied"
    assert shop.state()["returns"] == before["returns"]
    assert event_statuses(order_id)[late_id] == "superseded"


def test_stale_requested_after_created_changes_nothing(shop: ShopUnderTest):
    gid = shop.order("#2002", ITEMS)
    order_id = shop.event("created", "R-2", order_gid=gid, items=ITEMS, minutes=5)
    apply_order(order_id)
    before = shop.state()
    shop.event("requested", "R-2", order_gid=gid, items=ITEMS, minutes=0, event_id="evt_stale_req")
    assert apply_order(order_id).outcome == "applied"
    after = shop.state()
    assert after["returns"] == before["returns"]
    assert [o["tags"] for o in after["orders"]] == [o["tags"] for o in before["orders"]]
    assert event_statuses(order_id)["evt_stale_req"] == "superseded"
    assert return_row("R-2")["sync"] == "synced"


def test_all_events_at_once_in_reverse_order_converge_to_the_furthest_state(shop: ShopUnderTest):
    gid = shop.order("#2003", ITEMS)
    shop.event("completed", "R-3", order_gid=gid, items=ITEMS, minutes=60, event_id="c3")
    shop.event("created", "R-3", order_gid=gid, items=ITEMS, minutes=5, event_id="b3")
    order_id = shop.event("requested", "R-3", order_gid=gid, items=ITEMS, minutes=0, event_id="a3")
    assert apply_order(order_id).outcome == "applied"
    (ret,) = shop.shopify_returns()
    assert ret["status"] == "CLOSED"
    assert event_statuses(order_id) == {"a3": "superseded", "b3": "superseded", "c3": "applied"}


def test_cancelled_after_completed_is_a_conflict_kept_not_applied(shop: ShopUnderTest):
    gid = shop.order("#2004", ITEMS)
    order_id = shop.event("created", "R-4", order_gid=gid, items=ITEMS)
    shop.event("completed", "R-4", order_gid=gid, items=ITEMS, minutes=60, event_id="done4")
    apply_order(order_id)
    shop.event("cancelled", "R-4", order_gid=gid, items=ITEMS, minutes=90, event_id="cancel4")
    assert apply_order(order_id).outcome == "applied"
    (ret,) = shop.shopify_returns()
    assert ret["status"] == "CLOSED"  # not cancelled
    assert shop.shopify_order(gid)["tags"] == ["Sendcloud Return: Money back"]  # tag kept
    row = return_row("R-4")
    assert row["sync"] == "conflict"
    assert "kept completed" in row["detail"]
    assert event_statuses(order_id)["cancel4"] == "conflict"
    assert event_statuses(order_id)["done4"] == "applied"


def test_two_returns_with_different_items_on_one_order_both_sync(shop: ShopUnderTest):
    gid = shop.order("#2005", {101: 1, 102: 1})
    order_id = shop.event("created", "R-5a", order_gid=gid, items={101: 1}, refund_method="refund")
    shop.event("created", "R-5b", order_gid=gid, items={102: 1}, minutes=1, refund_method="store_credit")
    assert apply_order(order_id).outcome == "applied"
    returns = shop.shopify_returns()
    assert sorted(tuple(line["lineItemId"] for line in r["lines"]) for r in returns) == [
        ("gid://shopify/LineItem/101",),
        ("gid://shopify/LineItem/102",),
    ]
    assert sorted(shop.shopify_order(gid)["tags"]) == [
        "Sendcloud Return: Money back",
        "Sendcloud Return: Store credit",
    ]
    assert return_row("R-5a")["shopify_return_gid"] != return_row("R-5b")["shopify_return_gid"]


def test_the_same_item_returned_twice_is_rejected_and_not_retried(shop: ShopUnderTest):
    gid = shop.order("#2006", ITEMS)
    order_id = shop.event("created", "R-6a", order_gid=gid, items=ITEMS)
    shop.event("created", "R-6b", order_gid=gid, items=ITEMS, minutes=10, event_id="second6")
    outcome = apply_order(order_id)
    assert outcome.outcome == "applied"  # nothing to come back for
    assert len(shop.shopify_returns()) == 1
    second = return_row("R-6b")
    assert second["sync"] == "rejected"
    assert "item already returned" in second["detail"]
    assert event_statuses(order_id)["second6"] == "rejected"
    assert return_row("R-6a")["sync"] == "synced"
    # A later doorbell does not retry it.
    assert apply_order(order_id).outcome == "idle"


def test_an_order_named_only_by_name_is_resolved_and_its_gid_stored(shop: ShopUnderTest):
    gid = shop.order("#2007", ITEMS)
    order_id = shop.event("created", "R-7", order_name="#2007", items=ITEMS)
    assert apply_order(order_id).outcome == "applied"
    assert len(shop.shopify_returns()) == 1
    with transaction() as cur:
        cur.execute("SELECT order_gid FROM orders WHERE id = %s", (order_id,))
        assert cur.fetchone()["order_gid"] == gid


def test_a_completed_event_without_refund_method_uses_the_one_an_earlier_event_carried(shop: ShopUnderTest):
    # Given requested (with refund method and tracking) and then completed without them
    gid = shop.order("#2008", ITEMS)
    shop.event("requested", "R-8", order_gid=gid, items=ITEMS, refund_method="store_credit")
    order_id = shop.event("completed", "R-8", order_gid=gid, items=ITEMS, minutes=60, refund_method=None)
    # When both are applied at once
    assert apply_order(order_id).outcome == "applied"
    # Then the return is approved, tagged with the earlier refund method, and closed
    (ret,) = shop.shopify_returns()
    assert ret["status"] == "CLOSED"
    assert shop.shopify_order(gid)["tags"] == ["Sendcloud Return: Store credit"]
