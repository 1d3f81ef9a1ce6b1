"""Webhooks from the stand-in: subscriptions through the Admin API, fulfilment events, uninstall,
compliance topics, signing, headers and retries, received by a local HTTP server of our own."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.standin.apphelp import (
    Receiver,
    gql,
    install,
    new_app,
    new_domain,
    start_receiver,
    wait_until,
    webhook_is_genuine,
)

SUBSCRIBE = """mutation Sub($topic: WebhookSubscriptionTopic!, $uri: String!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: {uri: $uri, format: JSON}) {
    webhookSubscription { id topic uri format apiVersion { handle } }
    userErrors { field message }
  }
}"""
SUBSCRIPTIONS = """{ webhookSubscriptions(first: 10) { nodes { id topic uri } } }"""
HEADERS = (
    "x-shopify-topic",
    "x-shopify-hmac-sha256",
    "x-shopify-shop-domain",
    "x-shopify-api-version",
    "x-shopify-webhook-id",
    "x-shopify-event-id",
    "x-shopify-triggered-at",
)


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    running = start_receiver()
    yield running
    running.stop()


@pytest.fixture()
def fast_retries(admin) -> Iterator[None]:
    admin.set_webhook_delivery(max_attempts=3, backoff_s=0.05)
    yield
    admin.set_webhook_delivery(max_attempts=4, backoff_s=0.2)


@pytest.fixture()
def installed(standin, admin, receiver):
    """A shop with an installed app whose app-specific and compliance addresses are ours."""
    domain = new_domain("hooks")
    admin.create_shop(domain, None)
    client_id, secret = new_app(
        admin, webhooks_uri=receiver.url + "/app", compliance_uri=receiver.url + "/compliance"
    )
    tokens = install(standin, domain, client_id, secret)
    return domain, client_id, secret, tokens["access_token"]


def subscribe(standin, domain: str, token: str, topic: str, uri: str) -> dict:
    body = gql(standin, domain, token, SUBSCRIBE, {"topic": topic, "uri": uri}).json()
    return body["data"]["webhookSubscriptionCreate"]


def check_signed(received, secret: str, topic: str, domain: str) -> dict:
    headers = received.headers
    assert all(h in headers for h in HEADERS), headers
    assert headers["x-shopify-topic"] == topic and headers["x-shopify-shop-domain"] == domain
    assert webhook_is_genuine(received.body, headers["x-shopify-hmac-sha256"], secret)
    assert headers["content-type"].startswith("application/json")
    return json.loads(received.body)


def test_subscriptions_are_created_listed_and_refused_twice(standin, admin, installed, receiver):
    domain, client_id, _secret, token = installed
    created = subscribe(standin, domain, token, "FULFILLMENTS_CREATE", receiver.url + "/f")
    assert created["userErrors"] == []
    sub = created["webhookSubscription"]
    assert sub["id"].startswith("gid://shopify/WebhookSubscription/")
    assert (sub["topic"], sub["uri"], sub["format"], sub["apiVersion"]["handle"]) == (
        "FULFILLMENTS_CREATE",
        receiver.url + "/f",
        "JSON",
        "2026-07",
    )
    again = subscribe(standin, domain, token, "FULFILLMENTS_CREATE", receiver.url + "/f")
    assert again["webhookSubscription"] is None
    assert again["userErrors"][0]["message"] == "Address for this topic has already been taken"
    listed = gql(standin, domain, token, SUBSCRIPTIONS).json()["data"]["webhookSubscriptions"]["nodes"]
    assert listed == [{"id": sub["id"], "topic": "FULFILLMENTS_CREATE", "uri": receiver.url + "/f"}]
    assert [s["topic"] for s in admin.webhook_subscriptions(shop=domain, client_id=client_id)] == [
        "fulfillments/create"
    ]


def test_a_legacy_token_cannot_subscribe(standin, admin, receiver):
    domain = new_domain("legacy")
    admin.create_shop(domain, "shpat_legacy")
    created = subscribe(standin, domain, "shpat_legacy", "ORDERS_FULFILLED", receiver.url)
    assert created["webhookSubscription"] is None and created["userErrors"]


def test_fulfilment_delivers_fulfillments_create_and_the_orders_topic(standin, admin, installed, receiver):
    domain, _client_id, secret, token = installed
    for topic, path in (
        ("FULFILLMENTS_CREATE", "/f"),
        ("ORDERS_FULFILLED", "/o"),
        ("ORDERS_PARTIALLY_FULFILLED", "/o"),
    ):
        assert subscribe(standin, domain, token, topic, receiver.url + path)["userErrors"] == []
    order = admin.create_order(
        domain,
        "#1500",
        [{"id": 71, "quantity": 2}, {"id": 72, "quantity": 1}],
        order_id=1500,
        fulfilled=False,
    )
    first = admin.fulfill(domain, order["id"], [{"id": 71, "quantity": 1}])
    wait_until(lambda: receiver.by_topic("orders/partially_fulfilled"))
    fulfillment = check_signed(
        wait_until(lambda: receiver.by_topic("fulfillments/create"))[0], secret, "fulfillments/create", domain
    )
    assert fulfillment["id"] == int(first["id"].rsplit("/", 1)[1])
    assert fulfillment["order_id"] == 1500 and fulfillment["admin_graphql_api_id"] == first["id"]
    assert fulfillment["status"] == "success" and fulfillment["created_at"]
    assert [(x["id"], x["quantity"]) for x in fulfillment["line_items"]] == [(71, 1)]
    partial = check_signed(
        receiver.by_topic("orders/partially_fulfilled")[0], secret, "orders/partially_fulfilled", domain
    )
    assert (partial["id"], partial["admin_graphql_api_id"], partial["name"]) == (1500, order["id"], "#1500")
    assert partial["fulfillment_status"] == "partial"
    assert not receiver.by_topic("orders/fulfilled")

    admin.fulfill(domain, order["id"])  # the rest
    done = check_signed(
        wait_until(lambda: receiver.by_topic("orders/fulfilled"))[0], secret, "orders/fulfilled", domain
    )
    assert done["fulfillment_status"] == "fulfilled"
    wait_until(lambda: len(receiver.by_topic("fulfillments/create")) == 2)
    assert {r.path for r in receiver.by_topic("fulfillments/create")} == {"/f"}
    log = admin.webhook_deliveries(shop=domain, topic="fulfillments/create")
    assert len(log) == 2 and all(e["status"] == 200 and e["attempt"] == 1 for e in log)
    assert set(log[0]) >= {"topic", "shop", "uri", "event_id", "webhook_id", "status", "attempt", "at"}


def test_uninstall_delivers_a_signed_app_uninstalled_and_drops_subscriptions(
    standin, admin, installed, receiver
):
    domain, client_id, secret, token = installed
    subscribe(standin, domain, token, "ORDERS_FULFILLED", receiver.url + "/o")
    result = admin.uninstall(domain, client_id)
    assert result["deleted_subscriptions"] == 1
    assert gql(standin, domain, token, SUBSCRIPTIONS).status_code == 401
    received = wait_until(lambda: receiver.by_topic("app/uninstalled"))
    assert len(received) == 1 and received[0].path == "/app"
    shop = check_signed(received[0], secret, "app/uninstalled", domain)
    state = admin.state(domain)
    assert shop == {
        "id": state["id"],
        "name": domain.split(".")[0],
        "email": shop["email"],
        "domain": domain,
        "myshopify_domain": domain,
    }
    assert received[0].headers["x-shopify-event-id"] == result["event_id"]
    assert admin.webhook_subscriptions(shop=domain, client_id=client_id) == []
    # subscriptions are gone: a fulfilment now reaches nobody
    order = admin.create_order(domain, "#9", [{"quantity": 1}], fulfilled=False)
    assert admin.fulfill(domain, order["id"])["webhook_events"] == {
        "fulfillments/create": None,
        "orders/fulfilled": None,
    }


def test_compliance_topics_reach_the_compliance_address(standin, admin, installed, receiver):
    domain, client_id, secret, _token = installed
    customer = {"id": 191167, "email": "jane@example.com", "phone": "555-0100"}
    orders = ["gid://shopify/Order/299938", 280263]
    request = admin.compliance(domain, client_id, "customers/data_request", customer=customer, orders=orders)
    admin.compliance(domain, client_id, "customers/redact", customer=customer, orders=orders)
    admin.compliance(domain, client_id, "shop/redact")
    shop_id = admin.state(domain)["id"]
    for topic in ("customers/data_request", "customers/redact", "shop/redact"):
        wait_until(lambda t=topic: receiver.by_topic(t))
    data_request = check_signed(
        receiver.by_topic("customers/data_request")[0], secret, "customers/data_request", domain
    )
    assert data_request == {
        "shop_id": shop_id,
        "shop_domain": domain,
        "orders_requested": [299938, 280263],
        "customer": customer,
        "data_request": {"id": request["payload"]["data_request"]["id"]},
    }
    assert isinstance(data_request["data_request"]["id"], int)
    redact = check_signed(receiver.by_topic("customers/redact")[0], secret, "customers/redact", domain)
    assert redact == {
        "shop_id": shop_id,
        "shop_domain": domain,
        "customer": customer,
        "orders_to_redact": [299938, 280263],
    }
    shop_redact = check_signed(receiver.by_topic("shop/redact")[0], secret, "shop/redact", domain)
    assert shop_redact == {"shop_id": shop_id, "shop_domain": domain}
    assert {r.path for r in receiver.received} == {"/compliance"}


def test_a_failed_delivery_is_retried_with_the_same_ids_and_body(
    standin, admin, installed, receiver, fast_retries
):
    domain, client_id, secret, _token = installed
    receiver.statuses = [500, 503]
    admin.compliance(domain, client_id, "shop/redact")
    wait_until(lambda: len(receiver.by_topic("shop/redact")) == 3)
    attempts = receiver.by_topic("shop/redact")
    assert len({r.headers["x-shopify-webhook-id"] for r in attempts}) == 1
    assert len({r.headers["x-shopify-event-id"] for r in attempts}) == 1
    assert len({r.headers["x-shopify-triggered-at"] for r in attempts}) == 1
    assert len({r.body for r in attempts}) == 1
    assert all(webhook_is_genuine(r.body, r.headers["x-shopify-hmac-sha256"], secret) for r in attempts)
    log = admin.webhook_deliveries(shop=domain, topic="shop/redact")
    assert [(e["attempt"], e["status"]) for e in log] == [(1, 500), (2, 503), (3, 200)]


def test_no_answer_is_a_failure_too(standin, admin, installed, fast_retries):
    domain, client_id, _secret, _token = installed
    admin.register_app(client_id, [_secret], compliance_uri="http://127.0.0.1:9/nothing-listens")
    admin.compliance(domain, client_id, "shop/redact")
    log = wait_until(
        lambda: len(admin.webhook_deliveries(shop=domain, topic="shop/redact")) == 3
        and admin.webhook_deliveries(shop=domain, topic="shop/redact")
    )
    assert [e["status"] for e in log] == [None, None, None] and all(e["error"] for e in log)


def test_deliveries_are_signed_with_the_current_secret_after_a_rotation(standin, admin, installed, receiver):
    domain, client_id, old, _token = installed
    new = "shpss_rotated_" + client_id
    admin.register_app(client_id, [new, old], compliance_uri=receiver.url + "/compliance")
    admin.compliance(domain, client_id, "shop/redact")
    received = wait_until(lambda: receiver.by_topic("shop/redact"))[0]
    assert webhook_is_genuine(received.body, received.headers["x-shopify-hmac-sha256"], new)
    assert not webhook_is_genuine(received.body, received.headers["x-shopify-hmac-sha256"], old)


def test_a_subscription_can_be_deleted(standin, admin, installed, receiver):
    domain, client_id, _secret, token = installed
    sub = subscribe(standin, domain, token, "ORDERS_FULFILLED", receiver.url + "/o")["webhookSubscription"]
    deleted = gql(
        standin,
        domain,
        token,
        """mutation($id: ID!) { webhookSubscriptionDelete(id: $id) {
        deletedWebhookSubscriptionId userErrors { field message } } }""",
        {"id": sub["id"]},
    ).json()["data"]["webhookSubscriptionDelete"]
    assert deleted == {"deletedWebhookSubscriptionId": sub["id"], "userErrors": []}
    assert admin.webhook_subscriptions(shop=domain, client_id=client_id) == []
