"""ShopifyAPI end to end against the Shopify stand-in (standin/): the real client, real HTTP, the
stand-in's schema validation, state machine and userErrors."""

from __future__ import annotations

from typing import Any

import pytest

from standin.admin import StandinAdmin
from standin.server import RunningStandin
from workers import mapping
from workers.events import EventItem
from workers.lines import MappedItem, Shortfall, plan_return_lines
from workers.shopify import api as api_module
from workers.shopify.api import ShopifyAPI, UserErrors
from workers.shopify.client import AccessDenied, CallRecord, Endpoint, ShopifyClient, StaticToken

DOMAIN = "acme-nl.myshopify.com"
TOKEN = "shpat_standin_token"


@pytest.fixture
def admin(standin: RunningStandin) -> StandinAdmin:
    admin = StandinAdmin(standin.url)
    admin.reset()
    admin.create_shop(DOMAIN, TOKEN)
    api_module.clear_reason_cache()
    return admin


def make_api(
    standin: RunningStandin, token: str = TOKEN, records: list[CallRecord] | None = None
) -> ShopifyAPI:
    on_call = records.append if records is not None else None
    return ShopifyAPI(ShopifyClient(endpoint(standin, token), on_call=on_call))


def endpoint(standin: RunningStandin, token: str = TOKEN) -> Endpoint:
    url = f"{standin.url}/shops/{DOMAIN}/admin/api/2026-07/graphql.json"
    return Endpoint(DOMAIN, url, StaticToken(token))


def event_items(api: ShopifyAPI, items: list[dict[str, Any]]) -> list[MappedItem]:
    """Event items as the sync maps them (reason handle, per-shop definition id, the two notes)."""
    planned = []
    for raw in items:
        line_item = str(raw["line_item_id"])
        gid = line_item if line_item.startswith("gid://") else f"gid://shopify/LineItem/{line_item}"
        item = EventItem(
            gid, int(raw["quantity"]), raw["reason_id"], raw.get("reason"), raw.get("customer_note")
        )
        handle = mapping.reason_handle(item.reason_id, {})
        planned.append(
            MappedItem(
                line_item_gid=item.line_item_gid,
                quantity=item.quantity,
                reason_definition_gid=api.reason_definition_id(handle),
                reason_note=mapping.reason_note(item, handle),
                customer_note=mapping.customer_note(item),
            )
        )
    return planned


def test_request_approve_track_tag_note_close(standin: RunningStandin, admin: StandinAdmin) -> None:
    records: list[CallRecord] = []
    api = make_api(standin, records=records)
    created = admin.create_order(
        DOMAIN, "#1106", [{"title": "Shirt", "quantity": 2}, {"title": "Trousers", "quantity": 1}]
    )
    shirt, trousers = created["line_items"]

    assert set(api.access_scopes()) >= {"read_orders", "write_orders", "read_returns", "write_returns"}
    order_gid = api.find_order_gid("#1106")
    assert order_gid == created["id"]

    items = event_items(
        api,
        [
            {
                "line_item_id": shirt,
                "quantity": 1,
                "reason_id": 23,
                "reason": "Het staat me niet",
                "customer_note": "Valt te klein",
            },
            {"line_item_id": trousers, "quantity": 1, "reason_id": 30, "reason": "Te groot"},
        ],
    )
    plan = plan_return_lines(items, api.returnable_lines(order_gid))
    assert not isinstance(plan, Shortfall)

    requested = api.return_request(order_gid, plan)
    assert requested.status == "REQUESTED"
    assert requested.reverse_fulfillment_order_gids == ()  # no tracking possible yet
    assert requested.quantities_by_line_item() == {shirt: 1, trousers: 1}

    opened = api.approve_request(requested.gid)
    assert opened.status == "OPEN"
    [rfo] = opened.reverse_fulfillment_order_gids

    api.add_tracking(rfo, "3SSCLD123456789", "https://tracking.example.com/3SSCLD123456789")
    tag = mapping.refund_tag("exchange", "nl")
    assert tag in api.tags_add(order_gid, [tag])

    snapshot = api.order(order_gid)
    assert snapshot is not None
    note = mapping.append_exchange_note(snapshot.note, "R-100234", "Graag maat M in plaats van L")
    assert note is not None
    api.set_note(order_gid, note)

    snapshot = api.order(order_gid)
    assert snapshot is not None
    [ret] = snapshot.returns
    assert (ret.gid, ret.status) == (requested.gid, "OPEN")
    assert ret.tracking_numbers == ("3SSCLD123456789",)
    assert tag in snapshot.tags
    assert mapping.append_exchange_note(snapshot.note, "R-100234", "Graag maat M in plaats van L") is None

    closed = api.close(ret.gid)
    assert closed.status == "CLOSED"
    assert api.close(ret.gid).status == "CLOSED"  # closing a closed return succeeds, as on Shopify

    assert tag not in api.tags_remove(order_gid, [tag])
    operations = [record.operation for record in records]
    assert "ReturnRequest" in operations and "ReturnClose" in operations
    assert all(record.outcome in {"ok", "user_errors"} for record in records)


def test_the_same_item_twice_is_rejected(standin: RunningStandin, admin: StandinAdmin) -> None:
    api = make_api(standin)
    created = admin.create_order(DOMAIN, "#2001", [{"title": "Shirt", "quantity": 1}])
    [shirt] = created["line_items"]
    items = event_items(api, [{"line_item_id": shirt, "quantity": 1, "reason_id": 11}])
    plan = plan_return_lines(items, api.returnable_lines(created["id"]))
    assert not isinstance(plan, Shortfall)
    first = api.return_create(created["id"], plan)
    assert first.status == "OPEN"

    # Planning against Shopify's returnable quantity already sees the shortfall...
    assert isinstance(plan_return_lines(items, api.returnable_lines(created["id"])), Shortfall)
    # ...and sending it anyway gets Shopify's answer, classified as final.
    with pytest.raises(UserErrors) as raised:
        api.return_create(created["id"], plan)
    assert raised.value.kind == "rejected"
    assert raised.value.messages == ["Return line item has an invalid quantity."]


def test_decline_and_cancel(standin: RunningStandin, admin: StandinAdmin) -> None:
    api = make_api(standin)
    created = admin.create_order(DOMAIN, "#2002", [{"title": "Shirt", "quantity": 2}])
    [shirt] = created["line_items"]
    items = event_items(api, [{"line_item_id": shirt, "quantity": 1, "reason_id": 99}])
    plan = plan_return_lines(items, api.returnable_lines(created["id"]))
    assert not isinstance(plan, Shortfall)

    requested = api.return_request(created["id"], plan)
    assert api.decline_request(requested.gid).status == "DECLINED"
    assert api.decline_request(requested.gid).status == "DECLINED"  # a replay is not a conflict

    opened = api.return_create(created["id"], plan)
    assert api.cancel(opened.gid).status == "CANCELED"
    with pytest.raises(UserErrors) as raised:
        api.approve_request(opened.gid)
    assert raised.value.kind == "conflict"


def test_an_unfulfilled_order_has_nothing_to_return(standin: RunningStandin, admin: StandinAdmin) -> None:
    api = make_api(standin)
    created = admin.create_order(DOMAIN, "#2003", [{"title": "Shirt", "quantity": 1}], fulfilled=False)
    [shirt] = created["line_items"]
    snapshot = api.order(created["id"])
    assert snapshot is not None and snapshot.line_items[shirt] == (1, 1)
    items = event_items(api, [{"line_item_id": shirt, "quantity": 1, "reason_id": 30}])
    plan = plan_return_lines(items, api.returnable_lines(created["id"]))
    assert isinstance(plan, Shortfall) and plan.items[0].returnable == 0


def test_a_token_without_returns_scopes_is_access_denied(
    standin: RunningStandin, admin: StandinAdmin
) -> None:
    admin.set_scopes(DOMAIN, "shpat_old_install", ["read_orders", "write_orders"])
    created = admin.create_order(DOMAIN, "#2004", [{"title": "Shirt", "quantity": 1}])
    api = make_api(standin, token="shpat_old_install")
    assert "read_returns" not in api.access_scopes()
    with pytest.raises(AccessDenied) as raised:
        api.returnable_lines(created["id"])
    assert "read_returns" in raised.value.required_scopes


@pytest.mark.parametrize("mode", ["graphql", "http429"])
def test_the_client_rides_out_the_standins_rate_limit(
    standin: RunningStandin, admin: StandinAdmin, mode: str
) -> None:
    # A 600-point bucket, drained by forty mutations (10 points each, charged in full) below the
    # ~310 points a returnableFulfillments read asks for.
    admin.set_throttle(DOMAIN, bucket_size=600, restore_rate=50, throttle_mode=mode)
    created = admin.create_order(DOMAIN, "#2005", [{"title": "Shirt", "quantity": 1}])
    records: list[CallRecord] = []
    api = make_api(standin, records=records)
    for _ in range(40):
        api.tags_add(created["id"], ["drain"])

    lines = api.returnable_lines(created["id"])

    assert len(lines) == 1
    outcomes = [record.outcome for record in records]
    assert "throttled" in outcomes and outcomes[-1] == "ok"
    throttled = [record for record in records if record.outcome == "throttled"]
    assert all(record.http_status == (429 if mode == "http429" else 200) for record in throttled)


def test_a_refused_mutation_guard_keeps_the_mutation_off_shopify(
    standin: RunningStandin, admin: StandinAdmin
) -> None:
    # Given a client whose guard refuses (the sync's holder lost its order lock)
    class Fenced(Exception):
        pass

    def guard(mutation: bool) -> None:
        if mutation:
            raise Fenced("lost the lock")

    created = admin.create_order(DOMAIN, "#2010", [{"title": "Shirt", "quantity": 1}])
    api = ShopifyAPI(ShopifyClient(endpoint(standin), before_send=guard))
    calls_before = len(admin.calls(DOMAIN))
    # When it reads (allowed) and then tries to tag the order (a mutation)
    assert api.find_order_gid("#2010") == created["id"]
    with pytest.raises(Fenced):
        api.tags_add(created["id"], ["x"])
    # Then Shopify got the read and never the mutation
    assert [c["operation"] for c in admin.calls(DOMAIN)[calls_before:]] == ["FindOrderByName"]
    assert admin.state(DOMAIN)["orders"][-1]["tags"] == []
