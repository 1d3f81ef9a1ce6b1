"""The per-order timeline of Shopify calls: recorded through the client's on_call, read oldest first."""

from __future__ import annotations

import functools

import pytest

from tests.shopify.conftest import make_endpoint
from tests.shopify.scripted_server import ok, scripted, throttled
from workers.shopify.client import CallRecord, ShopifyClient
from workers.shopify.documents import RETURN_DETAILS
from workers.store import calls, shops
from workers.store.db import transaction


def _order(shop_id: int, ref: str) -> int:
    with transaction() as cur:
        cur.execute("INSERT INTO orders (shop_id, order_ref) VALUES (%s, %s) RETURNING id", (shop_id, ref))
        return cur.fetchone()["id"]


def test_records_are_stored_and_read_back_oldest_first(clean_db: str) -> None:
    shop = shops.register_shop("acme-nl.myshopify.com", "token")
    order_id = _order(shop.id, "gid://shopify/Order/1")
    other_order = _order(shop.id, "gid://shopify/Order/2")
    calls.record_call(shop.id, order_id, None, CallRecord("ReturnDetails", "ok", 200, 52, 12, 31))
    calls.record_call(shop.id, other_order, None, CallRecord("ReturnDetails", "ok", 200, 52, 12, 5))
    calls.record_call(
        shop.id,
        order_id,
        None,
        CallRecord("ReturnCreate", "user_errors", 200, 15, 10, 40, "invalid quantity"),
    )

    timeline = calls.calls_for_order(order_id)
    assert [(c["operation"], c["outcome"]) for c in timeline] == [
        ("ReturnDetails", "ok"),
        ("ReturnCreate", "user_errors"),
    ]
    assert timeline[1]["detail"] == "invalid quantity"
    assert (timeline[0]["requested_cost"], timeline[0]["actual_cost"], timeline[0]["duration_ms"]) == (
        52,
        12,
        31,
    )
    assert calls.calls_for_order(999) == []


@pytest.mark.usefixtures("small_settings")
def test_the_client_records_every_exchange_without_the_token(clean_db: str) -> None:
    shop_row = shops.register_shop("acme-nl.myshopify.com", "shpat_secret_token_value")
    order_id = _order(shop_row.id, "gid://shopify/Order/1")
    with scripted([throttled(50, 0, 100), ok({"order": None})]) as server:
        client = ShopifyClient(
            make_endpoint(server.url_template),
            on_call=functools.partial(calls.record_call, shop_row.id, order_id, None),
            sleep=lambda seconds: None,
        )
        client.execute(RETURN_DETAILS, {"id": "gid://shopify/Order/1"})

    timeline = calls.calls_for_order(order_id)
    assert [c["outcome"] for c in timeline] == ["throttled", "ok"]
    assert all("shpat_secret_token_value" not in str(c) for c in timeline)
