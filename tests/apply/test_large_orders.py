"""Orders with more lines than the snapshot's nested page (10 per return and per fulfilment),
against the stand-in: every line is seen, and an ordinary order's read leaves room in the bucket."""

from __future__ import annotations

from tests.apply.conftest import ShopUnderTest, event_statuses, return_row
from workers.apply import apply_order
from workers.store.db import transaction


def _snapshot_reads(order_id: int) -> list[dict]:
    """The order's snapshot reads as the sync recorded them (shopify_calls, what operators see)."""
    with transaction() as cur:
        cur.execute(
            "SELECT operation, requested_cost FROM shopify_calls"
            " WHERE order_id = %s AND operation LIKE 'OrderSnapshot%%' ORDER BY id",
            (order_id,),
        )
        return cur.fetchall()


def test_a_return_of_twelve_lines_is_created_with_all_twelve(shop: ShopUnderTest) -> None:
    lines = {li: 1 for li in range(301, 313)}
    gid = shop.order("#4001", lines)
    order_id = shop.event("created", "R-big-1", order_gid=gid, items=lines, tracking="3STRACK12")

    assert apply_order(order_id).outcome == "applied"

    assert return_row("R-big-1")["sync"] == "synced"
    assert set(event_statuses(order_id).values()) == {"applied"}
    [created] = shop.shopify_returns()
    assert sorted(line["lineItemId"] for line in created["lines"]) == sorted(
        f"gid://shopify/LineItem/{li}" for li in lines
    )
    # The first read found a full page of returnable lines and read again with a larger page.
    assert len(_snapshot_reads(order_id)) == 2


def test_an_ordinary_orders_read_requests_a_fraction_of_a_1000_point_bucket(shop: ShopUnderTest) -> None:
    gid = shop.order("#4002", {401: 2, 402: 1})
    order_id = shop.event("created", "R-small-1", order_gid=gid, items={401: 1})

    assert apply_order(order_id).outcome == "applied"

    [read] = _snapshot_reads(order_id)
    # Requested cost by Shopify's published rule (the stand-in's model): 305 with the shop's
    # reasons, where pages of 50 lines requested 705, most of a 1,000-point bucket.
    assert int(read["requested_cost"]) <= 350
