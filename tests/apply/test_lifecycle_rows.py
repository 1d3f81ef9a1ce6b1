"""Each row of PRODUCT.md §2, applied with apply_order and checked on the Shopify stand-in."""

from __future__ import annotations

import pytest

from tests.apply.conftest import ShopUnderTest, event_statuses, return_row
from workers.apply import apply_order

ITEMS = {101: 1}


def test_requested_makes_a_requested_return_with_mapped_reason_and_the_buyers_note(shop: ShopUnderTest):
    # Given a fulfilled order and a return.requested event with the buyer's own note
    gid = shop.order("#1001", {101: 1, 102: 2})
    order_id = shop.event("requested", "R-1", order_gid=gid, items={101: 1}, customer_note="Valt te klein")
    # When the order is applied
    outcome = apply_order(order_id)
    # Then Shopify shows one REQUESTED return for that item, reason Style (id 23), the buyer's note
    assert outcome.outcome == "applied"
    (ret,) = shop.shopify_returns()
    assert ret["status"] == "REQUESTED"
    assert [(line["lineItemId"], line["quantity"]) for line in ret["lines"]] == [
        ("gid://shopify/LineItem/101", 1)
    ]
    assert ret["lines"][0]["returnReasonDefinition"] == "style"
    assert ret["lines"][0]["customerNote"] == "Valt te klein"
    assert shop.shopify_order(gid)["returnStatus"] == "RETURN_REQUESTED"
    row = return_row("R-1")
    assert (row["sync"], row["applied_state"], row["shopify_status"]) == ("synced", "requested", "REQUESTED")
    assert row["shopify_return_gid"] == ret["id"]
    assert set(event_statuses(order_id).values()) == {"applied"}


def test_created_after_requested_approves_and_adds_tracking_tag_and_exchange_note(shop: ShopUnderTest):
    gid = shop.order("#1002", ITEMS)
    shop.event(
        "requested", "R-2", order_gid=gid, items=ITEMS, refund_method="exchange", exchange_note="Graag maat M"
    )
    order_id = shop.event(
        "created",
        "R-2",
        order_gid=gid,
        items=ITEMS,
        minutes=5,
        refund_method="exchange",
        tracking="3STRACK1",
        exchange_note="Graag maat M",
    )
    assert apply_order(order_id).outcome == "applied"
    (ret,) = shop.shopify_returns()
    assert ret["status"] == "OPEN"  # approved, not a second return
    deliveries = [d for rfo in ret["reverseFulfillmentOrders"] for d in rfo["reverseDeliveries"]]
    assert [d["trackingNumber"] for d in deliveries] == ["3STRACK1"]
    order = shop.shopify_order(gid)
    assert order["tags"] == ["Sendcloud Return: Exchange"]
    assert "[Return R-2] exchange: Graag maat M" in (order["note"] or "")
    assert order["returnStatus"] == "IN_PROGRESS"
    row = return_row("R-2")
    assert (row["applied_state"], row["note_appended"]) == ("created", True)
    # Applying again (a replayed doorbell) adds nothing twice.
    shop.event(
        "created",
        "R-2",
        order_gid=gid,
        items=ITEMS,
        minutes=6,
        refund_method="exchange",
        tracking="3STRACK1",
        exchange_note="Graag maat M",
    )
    assert apply_order(order_id).outcome == "applied"
    again = shop.shopify_order(gid)
    assert again["note"] == order["note"] and again["tags"] == order["tags"]
    (ret,) = shop.shopify_returns()
    assert len([d for rfo in ret["reverseFulfillmentOrders"] for d in rfo["reverseDeliveries"]]) == 1


def test_created_without_request_creates_an_open_return(shop: ShopUnderTest):
    gid = shop.order("#1003", ITEMS)
    order_id = shop.event("created", "R-3", order_gid=gid, items=ITEMS, tracking="JVGL1")
    assert apply_order(order_id).outcome == "applied"
    (ret,) = shop.shopify_returns()
    assert ret["status"] == "OPEN"
    assert shop.shopify_order(gid)["tags"] == ["Sendcloud Return: Money back"]


def test_completed_closes_the_return(shop: ShopUnderTest):
    gid = shop.order("#1004", ITEMS)
    order_id = shop.event("created", "R-4", order_gid=gid, items=ITEMS)
    apply_order(order_id)
    shop.event("completed", "R-4", order_gid=gid, items=ITEMS, minutes=60)
    assert apply_order(order_id).outcome == "applied"
    (ret,) = shop.shopify_returns()
    assert ret["status"] == "CLOSED"
    assert shop.shopify_order(gid)["returnStatus"] == "RETURNED"
    assert return_row("R-4")["applied_state"] == "completed"


def test_cancelled_requested_return_is_declined(shop: ShopUnderTest):
    gid = shop.order("#1005", ITEMS)
    order_id = shop.event("requested", "R-5", order_gid=gid, items=ITEMS)
    apply_order(order_id)
    shop.event("cancelled", "R-5", order_gid=gid, items=ITEMS, minutes=30)
    assert apply_order(order_id).outcome == "applied"
    (ret,) = shop.shopify_returns()
    assert ret["status"] == "DECLINED"
    assert shop.shopify_order(gid)["returnStatus"] == "NO_RETURN"


def test_cancelled_open_return_is_cancelled_and_its_tag_removed(shop: ShopUnderTest):
    gid = shop.order("#1006", ITEMS)
    order_id = shop.event("created", "R-6", order_gid=gid, items=ITEMS)
    apply_order(order_id)
    assert shop.shopify_order(gid)["tags"] == ["Sendcloud Return: Money back"]
    shop.event("cancelled", "R-6", order_gid=gid, items=ITEMS, minutes=30)
    assert apply_order(order_id).outcome == "applied"
    (ret,) = shop.shopify_returns()
    assert ret["status"] == "CANCELED"
    order = shop.shopify_order(gid)
    assert order["tags"] == [] and order["returnStatus"] == "NO_RETURN"
    assert return_row("R-6")["applied_state"] == "cancelled"


def test_cancelled_keeps_the_tag_while_another_live_return_has_the_same_method(shop: ShopUnderTest):
    gid = shop.order("#1007", {101: 1, 102: 1})
    order_id = shop.event("created", "R-7a", order_gid=gid, items={101: 1})
    shop.event("created", "R-7b", order_gid=gid, items={102: 1}, minutes=1)
    apply_order(order_id)
    shop.event("cancelled", "R-7a", order_gid=gid, items={101: 1}, minutes=30)
    apply_order(order_id)
    assert shop.shopify_order(gid)["tags"] == ["Sendcloud Return: Money back"]
    statuses = {r["status"] for r in shop.shopify_returns()}
    assert statuses == {"CANCELED", "OPEN"}


@pytest.mark.parametrize("path", ["requested", "created"])
@pytest.mark.parametrize("buyer_note", [None, "Valt te klein"])
def test_both_note_fields_hold_exactly_what_their_names_say(shop: ShopUnderTest, path: str, buyer_note):
    # PRODUCT.md §2: returnReasonNote is the original reason text; a requested return carries the
    # customer's note. Merchants read both in the Shopify admin.
    gid = shop.order("#1010", {101: 1, 102: 1})
    order_id = shop.event(path, "R-10", order_gid=gid, items={101: 1}, customer_note=buyer_note)
    # Reason 7 maps to Other; without a text it must still carry a note Shopify accepts.
    shop.event(path, "R-11", order_gid=gid, items={102: 1}, reason_id=7, reason=None, minutes=1)
    assert apply_order(order_id).outcome == "applied"
    lines = {ret["lines"][0]["lineItemId"]: ret["lines"][0] for ret in shop.shopify_returns()}
    with_text, other = lines["gid://shopify/LineItem/101"], lines["gid://shopify/LineItem/102"]
    if path == "requested":
        # returnRequest has no reason note: the buyer's note only, or nothing at all.
        assert with_text["customerNote"] == buyer_note
        assert other["customerNote"] is None
    else:
        assert with_text["returnReasonNote"] == "Het staat me niet"  # never the buyer's note mixed in
        assert other["returnReasonDefinition"] == "other-reason"
        assert other["returnReasonNote"] == "Wrong product shipped"  # the label, in the shop's language
