"""Shopify's webhooks to the app: signed or refused, stored before the 200, de-duplicated; an
uninstall that loses nothing and calls Shopify no more; the compliance topics; fulfilment that wakes
a waiting return within seconds."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from typing import Any

import requests

from config import get_settings
from tests.app.conftest import AppWorld, record, statuses
from tests.apply.conftest import return_row, wait_until
from tests.apply.test_relay import start_relay, stop
from workers.apply import apply_order
from workers.store.db import transaction
from workers.store.shops import ShopStatus

ITEMS = {101: 1}


def deliveries(topic: str | None = None) -> list[dict[str, Any]]:
    with transaction() as cur:
        cur.execute(
            "SELECT topic, shop_domain, outcome, detail, processed_at FROM webhook_deliveries"
            " WHERE %s::text IS NULL OR topic = %s ORDER BY id",
            (topic, topic),
        )
        return [dict(row) for row in cur.fetchall()]


def post_webhook(
    world: AppWorld,
    topic: str,
    shop: str,
    body: dict[str, Any],
    *,
    secret: str | None = None,
    webhook_id: str | None = None,
) -> requests.Response:
    raw = json.dumps(body).encode()
    digest = base64.b64encode(
        hmac.new((secret or world.secret).encode(), raw, hashlib.sha256).digest()
    ).decode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Hmac-Sha256": digest,
    }
    return requests.post(f"{world.web_url}/shopify/webhooks", data=raw, headers=headers, timeout=30)


def test_a_webhook_with_a_bad_hmac_gets_401_and_changes_nothing(app_world: AppWorld):
    domain, _ = app_world.new_shop()
    app_world.install(domain)
    forged = post_webhook(app_world, "app/uninstalled", domain, {"domain": domain}, secret="shpss_guess")
    assert forged.status_code == 401
    unsigned = requests.post(
        f"{app_world.web_url}/shopify/webhooks",
        data=b"{}",
        headers={"X-Shopify-Topic": "app/uninstalled", "X-Shopify-Shop-Domain": domain},
        timeout=30,
    )
    assert unsigned.status_code == 401
    assert deliveries() == []
    assert app_world.shop(domain).status is ShopStatus.ACTIVE


def test_a_redelivered_webhook_is_processed_once(app_world: AppWorld):
    domain, gids = app_world.new_shop({"#1": ITEMS})
    app_world.install(domain)
    body = {"id": 1, "order_id": int(gids["#1"].rsplit("/", 1)[1]), "status": "success"}
    first = post_webhook(app_world, "fulfillments/create", domain, body, webhook_id="wh-1")
    again = post_webhook(app_world, "fulfillments/create", domain, body, webhook_id="wh-1")
    assert (first.status_code, again.status_code) == (200, 200)
    wait_until(lambda: all(d["processed_at"] for d in deliveries("fulfillments/create")), 15)
    assert len(deliveries("fulfillments/create")) == 1


def test_an_uninstall_in_the_middle_of_a_backlog_loses_nothing_and_calls_shopify_no_more(app_world: AppWorld):
    orders = {f"#{n}": {100 + n: 1} for n in range(6)}
    domain, gids = app_world.new_shop(orders)
    app_world.install(domain)
    order_ids = [record(domain, "created", f"R-{n}", gids[f"#{n}"], {100 + n: 1}) for n in range(6)]
    # Given half of the backlog is applied
    for order_id in order_ids[:3]:
        assert apply_order(order_id).outcome == "applied"
    # When the merchant uninstalls: Shopify revokes the tokens and tells the app
    app_world.admin.uninstall(domain, app_world.client_id)
    wait_until(lambda: [d["outcome"] for d in deliveries("app/uninstalled")] == ["done"], 15)
    shop = app_world.shop(domain)
    assert (shop.status, shop.access_token) == (ShopStatus.UNINSTALLED, None)
    calls_after_uninstall = len(app_world.admin.calls(domain))
    # Then the rest of the backlog waits, saying why and where to reinstall, without a call
    for order_id in order_ids[3:]:
        assert apply_order(order_id).outcome == "waiting"
    detail = return_row("R-4")["detail"]
    assert detail == f"app uninstalled: reinstall at {app_world.web_url}/shopify/install?shop={domain}"
    assert len(app_world.admin.calls(domain)) == calls_after_uninstall
    # And a reinstall resumes everything, with nothing lost
    assert app_world.install(domain).status_code == 200
    for order_id in order_ids[3:]:
        assert apply_order(order_id).outcome == "applied"
    assert set(statuses(domain).values()) == {"applied"} and len(statuses(domain)) == 6
    assert len(app_world.admin.state(domain)["returns"]) == 6


def _personal_fields(domain: str) -> list[Any]:
    with transaction() as cur:
        cur.execute(
            """
            SELECT e.payload -> 'return' -> 'exchange_note' AS note,
                   e.payload -> 'return' -> 'tracking' AS tracking,
                   jsonb_path_query_array(e.payload, '$.return.items[*].customer_note') AS customer_notes,
                   jsonb_path_query_array(e.payload, '$.return.items[*].reason') AS reasons,
                   e.payload -> 'extra' AS extra
            FROM events e JOIN shops s ON s.id = e.shop_id WHERE s.domain = %s ORDER BY e.id
            """,
            (domain,),
        )
        return [dict(row) for row in cur.fetchall()]


def test_compliance_webhooks_report_and_erase_what_the_sync_holds(app_world: AppWorld):
    domain, gids = app_world.new_shop({"#1": ITEMS, "#2": {102: 1}})
    app_world.install(domain)
    personal = {"exchange_note": "Maat M graag", "tracking": {"number": "3SPERSONAL1"}}
    item = {"reason": "Te klein voor mij", "customer_note": "Jammer!"}
    one = record(domain, "created", "R-1", gids["#1"], ITEMS, item=item, **personal)
    record(domain, "created", "R-2", gids["#2"], {102: 1}, item=dict(item), **dict(personal))
    assert apply_order(one).outcome == "applied"
    number_1 = int(gids["#1"].rsplit("/", 1)[1])
    # customers/data_request: what the sync holds for the customer's order, recorded for an operator
    app_world.admin.compliance(domain, app_world.client_id, "customers/data_request", orders=[number_1])
    wait_until(lambda: [d["outcome"] for d in deliveries("customers/data_request")] == ["done"], 15)
    with transaction() as cur:
        cur.execute("SELECT orders_requested, report FROM data_requests")
        [request] = cur.fetchall()
    assert request["orders_requested"] == [number_1]
    [held] = request["report"]["orders"].values()
    [event] = held["returns"]["R-1"]["events"]
    assert event["personal"]["exchange_note"] == "Maat M graag"
    assert event["personal"]["items"] == [{"reason": "Te klein voor mij", "customer_note": "Jammer!"}]
    # customers/redact: that order's personal fields are gone from the database; the other's stay
    app_world.admin.compliance(domain, app_world.client_id, "customers/redact", orders=[number_1])
    wait_until(lambda: [d["outcome"] for d in deliveries("customers/redact")] == ["done"], 15)
    first, second = _personal_fields(domain)
    assert first == {"note": None, "tracking": None, "customer_notes": [], "reasons": [], "extra": None}
    assert second["note"] == "Maat M graag"
    with transaction() as cur:
        cur.execute(
            "SELECT count(*) AS n FROM shopify_calls WHERE order_id = %s AND detail IS NOT NULL", (one,)
        )
        assert cur.fetchone()["n"] == 0
    # What the sync needs stays: ids, states, statuses
    assert return_row("R-1")["sync"] == "synced" and statuses(domain)
    # shop/redact: everything personal of the shop goes
    app_world.admin.compliance(domain, app_world.client_id, "shop/redact")
    wait_until(lambda: [d["outcome"] for d in deliveries("shop/redact")] == ["done"], 15)
    assert all(
        row == {"note": None, "tracking": None, "customer_notes": [], "reasons": [], "extra": None}
        for row in _personal_fields(domain)
    )


def test_a_return_waiting_for_fulfilment_syncs_within_seconds_of_the_fulfilment(
    app_world: AppWorld, celery_workers: Any, redis_client: Any
):
    # (app_world first: the worker processes start with its settings in their environment)
    domain, _ = app_world.new_shop()
    app_world.install(domain)
    created = app_world.admin.create_order(
        domain, "#9", [{"id": 901, "quantity": 1, "title": "Coat"}], fulfilled=False
    )
    order_id = record(domain, "created", "R-9", created["id"], {901: 1})
    assert apply_order(order_id).outcome == "waiting"
    assert return_row("R-9")["detail"] == "order not fulfilled yet"
    relay = start_relay(get_settings().redis_url)
    try:
        # When the merchant fulfils the order in Shopify (the stand-in sends the webhook)
        app_world.admin.fulfill(domain, created["id"])
        # Then the return syncs now, not at the next waiting retry (WAITING_RETRY_S = 300 s)
        assert wait_until(lambda: return_row("R-9")["sync"] == "synced", 30)
    finally:
        stop(relay)
    assert [r["status"] for r in app_world.admin.state(domain)["returns"]] == ["OPEN"]
