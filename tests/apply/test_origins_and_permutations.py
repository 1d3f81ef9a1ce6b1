"""The five return origins, and any arrival order of one return's events, end in the same Shopify
state (PRODUCT.md §2 "Supported return origins" and §4)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.apply.conftest import T0, ShopUnderTest, return_row
from workers.apply import apply_order
from workers.events import load_event
from workers.store.inbox import record_event

ITEMS = {301: 1, 302: 2}


def _body(
    shop: ShopUnderTest,
    event_type: str,
    return_id: str,
    order_name: str,
    origin: str,
    minutes: int,
    tracking: str | None,
    event_id: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": event_id or f"evt_{uuid.uuid4().hex[:16]}",
        "type": f"return.{event_type}",
        "occurred_at": T0.replace(minute=minutes).isoformat(),
        "shop": shop.domain,
        "return": {
            "id": return_id,
            "order": {"name": order_name},
            "origin": origin,
            "refund_method": "exchange",
            "exchange_note": "Graag maat M",
            "items": [
                {"line_item_id": str(li), "quantity": qty, "reason_id": 31, "reason": "Te klein"}
                for li, qty in ITEMS.items()
            ],
        },
    }
    if tracking:
        body["return"]["tracking"] = {"number": tracking}
    return body


def _final_shopify_view(shop: ShopUnderTest, order_gid: str) -> dict[str, Any]:
    """What a merchant sees on the order, ids aside."""
    order = shop.shopify_order(order_gid)
    returns = [r for r in shop.shopify_returns() if r["orderId"] == order_gid]
    return {
        "order_badge": order["returnStatus"],
        "tags": order["tags"],
        "note_markers": (order["note"] or "").count("[Return "),
        "returns": sorted(
            (
                r["status"],
                tuple(sorted((line["lineItemId"], line["quantity"]) for line in r["lines"])),
                tuple(
                    d["trackingNumber"]
                    for rfo in r["reverseFulfillmentOrders"]
                    for d in rfo["reverseDeliveries"]
                ),
            )
            for r in returns
        ),
    }


ORIGINS = {
    # origin: (the event types the platform sends for it, the tracking number on its label)
    "return_portal": (["created", "completed"], "3SRETURN0001"),
    "return_portal_request": (["requested", "created", "completed"], "3SRETURN0002"),
    "return_portal_no_outbound": (["created", "completed"], "3SRETURN0003"),
    "manual_order_return": (["created", "completed"], "3SRETURN0004"),
    "label_in_the_box": (["created", "completed"], "JVGL0000005"),
}


@pytest.mark.parametrize("origin", sorted(ORIGINS))
def test_every_origin_syncs_from_first_event_to_returned(shop: ShopUnderTest, origin: str):
    # Given a fulfilled order (for no_outbound it was fulfilled in Shopify itself: same to us)
    name = f"#{origin[:6]}-1"
    gid = shop.order(name, ITEMS)
    types, tracking = ORIGINS[origin]
    # When the platform's events of that origin arrive and are applied one by one
    badges = []
    for minutes, event_type in enumerate(types):
        body = _body(shop, event_type, f"R-{origin}", name, origin, minutes, tracking)
        result = record_event(load_event(body), body)
        assert result.status == "accepted"
        assert apply_order(result.order_id).outcome == "applied"
        badges.append(shop.shopify_order(gid)["returnStatus"])
    # Then the order shows each badge of PRODUCT.md §2 in turn and ends Returned, decorated once
    expected_badges = {"requested": "RETURN_REQUESTED", "created": "IN_PROGRESS", "completed": "RETURNED"}
    assert badges == [expected_badges[t] for t in types]
    view = _final_shopify_view(shop, gid)
    assert view == {
        "order_badge": "RETURNED",
        "tags": ["Sendcloud Return: Exchange"],
        "note_markers": 1,
        "returns": [
            ("CLOSED", (("gid://shopify/LineItem/301", 1), ("gid://shopify/LineItem/302", 2)), (tracking,))
        ],
    }
    assert return_row(f"R-{origin}")["sync"] == "synced"


EVENT_TYPES = ("requested", "created", "completed")
arrivals = st.lists(st.sampled_from(EVENT_TYPES), min_size=1, max_size=6).filter(
    lambda seq: "completed" in seq
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrival=arrivals, same_ids=st.booleans())
def test_any_arrival_order_with_duplicates_converges_to_one_closed_return(
    shop: ShopUnderTest, arrival: list[str], same_ids: bool
):
    # Given one return's events arriving in this order, some more than once (re-deliveries reuse
    # the event id; re-sent snapshots get a new one), each applied as it arrives
    name = f"#P{uuid.uuid4().hex[:8]}"
    gid = shop.order(name, ITEMS)
    return_id = f"R-{uuid.uuid4().hex[:8]}"
    for event_type in arrival:
        minutes = EVENT_TYPES.index(event_type)
        event_id = f"evt_{return_id}_{event_type}" if same_ids else None
        body = _body(shop, event_type, return_id, name, "return_portal_request", minutes, "3SPERM", event_id)
        result = record_event(load_event(body), body)
        assert result.status in ("accepted", "duplicate")
        assert apply_order(result.order_id).outcome in ("applied", "idle")
    # Then Shopify holds exactly the state of the in-order lifecycle: one CLOSED return, tagged,
    # tracked and noted once
    assert _final_shopify_view(shop, gid) == {
        "order_badge": "RETURNED",
        "tags": ["Sendcloud Return: Exchange"],
        "note_markers": 1,
        "returns": [
            ("CLOSED", (("gid://shopify/LineItem/301", 1), ("gid://shopify/LineItem/302", 2)), ("3SPERM",))
        ],
    }
    assert return_row(return_id)["applied_state"] == "completed"
