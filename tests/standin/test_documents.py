"""Documents executed as Shopify executes them: several mutation root fields in one document, a
combined read of an order with its returns in full, the 1,000-point single-query limit, and the
two cost models (the recorded one checked against every cost Shopify sent in the captures)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from standin import schema as schema_mod
from standin.throttle import query_cost

TOKEN = "shpat_docs"
CAPTURES = Path("/work/shared/shopify/captures")

# A copy of the ReturnFields fragment of workers/shopify/documents.py (copied, not imported: the
# product code changes on its own schedule; this test is about the stand-in).
RETURN_FIELDS = """
fragment ReturnFields on Return {
  id
  name
  status
  returnLineItems(first: 50) {
    nodes {
      ... on ReturnLineItem {
        id
        quantity
        fulfillmentLineItem { id lineItem { id } }
      }
    }
  }
  reverseFulfillmentOrders(first: 5) {
    nodes {
      id
      reverseDeliveries(first: 5) {
        nodes {
          id
          deliverable {
            ... on ReverseDeliveryShippingDeliverable { tracking { number url } }
          }
        }
      }
    }
  }
}
"""
ORDER_WITH_RETURNS = (
    """
query OrderWithReturns($id: ID!) {
  order(id: $id) {
    id
    name
    returns(first: 10) { nodes { ...ReturnFields } }
  }
  returnableFulfillments(orderId: $id, first: 5) {
    nodes {
      id
      returnableFulfillmentLineItems(first: 50) {
        nodes { quantity fulfillmentLineItem { id lineItem { id } } }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""
    + RETURN_FIELDS
)
# The stand-in rule (throttle.py), worked out: a returnLineItems node = fulfillmentLineItem (1) +
# lineItem (1) = 2, so 2 + 50 x 2 = 102; a reverse delivery = deliverable (1) + tracking (1) = 2,
# reverseDeliveries 2 + 5 x 2 = 12, reverseFulfillmentOrders 2 + 5 x 12 = 62; a return 164;
# returns(first: 10) 2 + 10 x 164 = 1642, order 1643; returnableFulfillments 2 + 5 x 102 = 512.
ORDER_WITH_RETURNS_COST = 2155
# The recorded model: lines 2 + 6 x 3 = 20, deliveries 2 + 3 x 3 = 11, RFOs 2 + 3 x 12 = 38, a
# return 58, returns 2 + 4 x 59 = 238, order 239; returnableFulfillments 2 + 3 x 21 = 65.
ORDER_WITH_RETURNS_COST_RECORDED = 304


@pytest.fixture()
def shop(admin) -> str:
    domain = f"docs-{uuid.uuid4().hex[:8]}.myshopify.com"
    admin.create_shop(domain, TOKEN)
    return domain


def gql(standin, shop: str, query: str, variables: dict[str, Any] | None = None, token: str = TOKEN) -> Any:
    response = requests.post(
        standin.graphql_url(shop),
        json={"query": query, "variables": variables or {}},
        headers={"X-Shopify-Access-Token": token},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()


def returnable_lines(standin, shop: str, order_id: str) -> list[str]:
    body = gql(
        standin,
        shop,
        """query($id: ID!) { returnableFulfillments(orderId: $id, first: 5) { nodes {
        returnableFulfillmentLineItems(first: 10) { nodes { fulfillmentLineItem { id } } } } } }""",
        {"id": order_id},
    )
    return [
        n["fulfillmentLineItem"]["id"]
        for f in body["data"]["returnableFulfillments"]["nodes"]
        for n in f["returnableFulfillmentLineItems"]["nodes"]
    ]


def open_return(standin, shop: str, order_id: str, fli: str) -> dict[str, Any]:
    body = gql(
        standin,
        shop,
        """mutation($input: ReturnInput!) { returnCreate(returnInput: $input) {
        return { id reverseFulfillmentOrders(first: 5) { nodes { id } } } userErrors { message } } }""",
        {
            "input": {
                "orderId": order_id,
                "returnLineItems": [{"fulfillmentLineItemId": fli, "quantity": 1, "returnReason": "COLOR"}],
            }
        },
    )
    return body["data"]["returnCreate"]["return"]


# --- several mutations in one document ------------------------------------------------------

MULTI = """mutation Multi($order: ID!, $missing: ID!, $ret: ID!) {
  a: tagsAdd(id: $order, tags: ["first"]) { node { ... on Order { tags } } userErrors { field message } }
  b: tagsAdd(id: $missing, tags: ["never"]) { node { id } userErrors { field message } }
  c: returnClose(id: $ret) { return { id status } userErrors { field message code } }
  d: tagsRemove(id: $order, tags: ["first"]) { node { ... on Order { tags } } userErrors { field message } }
  tagsAdd(id: $order, tags: ["last"]) { node { ... on Order { tags } } userErrors { field message } }
}"""


def test_root_fields_run_in_order_with_their_own_user_errors_and_a_summed_cost(standin, admin, shop):
    order = admin.create_order(shop, "#4001", [{"id": 401, "quantity": 1}], order_id=4001)
    ret = open_return(standin, shop, order["id"], returnable_lines(standin, shop, order["id"])[0])
    body = gql(
        standin, shop, MULTI, {"order": order["id"], "missing": "gid://shopify/Order/999", "ret": ret["id"]}
    )
    assert "errors" not in body
    data = body["data"]
    assert list(data) == ["a", "b", "c", "d", "tagsAdd"]
    # in document order: a sees its own tag, d removes it, the unaliased last field adds another
    assert data["a"] == {"node": {"tags": ["first"]}, "userErrors": []}
    assert data["d"] == {"node": {"tags": []}, "userErrors": []}
    assert data["tagsAdd"] == {"node": {"tags": ["last"]}, "userErrors": []}
    # b's userErrors are its own and stopped nothing
    assert data["b"] == {"node": None, "userErrors": [{"field": ["id"], "message": "Order does not exist"}]}
    assert data["c"] == {"return": {"id": ret["id"], "status": "CLOSED"}, "userErrors": []}
    assert body["extensions"]["cost"]["requestedQueryCost"] == 50
    assert body["extensions"]["cost"]["actualQueryCost"] == 50
    assert admin.state(shop)["orders"][0]["tags"] == ["last"]
    assert admin.calls(shop)[-1]["root_fields"] == [
        "tagsAdd",
        "tagsAdd",
        "returnClose",
        "tagsRemove",
        "tagsAdd",
    ]


def test_a_top_level_error_nulls_only_its_own_field(standin, admin, shop):
    order = admin.create_order(shop, "#4002", [{"id": 402, "quantity": 1}], order_id=4002)
    ret = open_return(standin, shop, order["id"], returnable_lines(standin, shop, order["id"])[0])
    admin.set_scopes(shop, "shpat_no_write_returns", ["read_orders", "write_orders", "read_returns"])
    body = gql(
        standin,
        shop,
        """mutation($order: ID!, $ret: ID!) {
          a: tagsAdd(id: $order, tags: ["kept"]) { userErrors { message } }
          b: returnClose(id: $ret) { return { status } userErrors { message } }
          c: tagsAdd(id: "gid://shopify/LineItem/402", tags: ["x"]) { userErrors { message } }
          d: tagsAdd(id: $order, tags: ["after"]) { userErrors { message } }
        }""",
        {"order": order["id"], "ret": ret["id"]},
        token="shpat_no_write_returns",
    )
    assert body["data"] == {"a": {"userErrors": []}, "b": None, "c": None, "d": {"userErrors": []}}
    errors = {tuple(e["path"]): e["extensions"]["code"] for e in body["errors"]}
    assert errors == {("b",): "ACCESS_DENIED", ("c",): "RESOURCE_NOT_FOUND"}
    state = admin.state(shop)
    assert state["orders"][0]["tags"] == ["after", "kept"]
    assert state["returns"][0]["status"] == "OPEN"


def test_a_lost_response_applies_the_whole_document(standin, admin, shop):
    order = admin.create_order(shop, "#4003", [{"id": 403, "quantity": 1}], order_id=4003)
    admin.set_faults(shop, lost_response_rate=1.0, seed=5)
    with pytest.raises(requests.ConnectionError):
        requests.post(
            standin.graphql_url(shop),
            json={
                "query": """mutation($id: ID!) {
                  a: tagsAdd(id: $id, tags: ["one"]) { userErrors { message } }
                  b: orderUpdate(input: {id: $id, note: "two"}) { userErrors { message } }
                  c: tagsAdd(id: $id, tags: ["three"]) { userErrors { message } }
                }""",
                "variables": {"id": order["id"]},
            },
            headers={"X-Shopify-Access-Token": TOKEN},
            timeout=10,
        )
    admin.set_faults(shop)
    saved = admin.state(shop)["orders"][0]
    assert saved["tags"] == ["one", "three"] and saved["note"] == "two"
    last = admin.calls(shop)[-1]
    assert last["fault"] == "lost_response" and last["root_fields"] == ["tagsAdd", "orderUpdate", "tagsAdd"]


# --- the combined read of an order with its returns -----------------------------------------


def _order_with_two_returns(standin, admin, shop: str) -> tuple[dict[str, Any], dict[str, Any]]:
    order = admin.create_order(
        shop, "#4100", [{"id": 410, "quantity": 2}, {"id": 411, "quantity": 1}], order_id=4100
    )
    flis = returnable_lines(standin, shop, order["id"])
    opened = open_return(standin, shop, order["id"], flis[0])
    rfo = opened["reverseFulfillmentOrders"]["nodes"][0]["id"]
    gql(
        standin,
        shop,
        """mutation($rfo: ID!) { reverseDeliveryCreateWithShipping(reverseFulfillmentOrderId: $rfo,
        reverseDeliveryLineItems: [], notifyCustomer: false,
        trackingInput: {number: "3SRET1", url: "https://t.example/3SRET1"}) { userErrors { message } } }""",
        {"rfo": rfo},
    )
    gql(
        standin,
        shop,
        """mutation($input: ReturnRequestInput!) {
        returnRequest(input: $input) { userErrors { message } } }""",
        {
            "input": {
                "orderId": order["id"],
                "returnLineItems": [
                    {"fulfillmentLineItemId": flis[1], "quantity": 1, "returnReason": "STYLE"}
                ],
            }
        },
    )
    return order, opened


def test_the_combined_read_is_refused_above_1000_points_as_shopify_does(standin, admin, shop):
    order, _ = _order_with_two_returns(standin, admin, shop)
    before = len(admin.calls(shop))
    body = gql(standin, shop, ORDER_WITH_RETURNS, {"id": order["id"]})
    assert "data" not in body
    (error,) = body["errors"]
    assert error["extensions"] == {
        "code": "MAX_COST_EXCEEDED",
        "cost": ORDER_WITH_RETURNS_COST,
        "maxCost": 1000,
        "documentation": "https://shopify.dev/api/usage/rate-limits",
    }
    assert error["message"].startswith(
        f"Query cost is {ORDER_WITH_RETURNS_COST}, which exceeds the single query max cost limit (1000)."
    )
    assert body["extensions"]["cost"]["requestedQueryCost"] == ORDER_WITH_RETURNS_COST
    assert body["extensions"]["cost"]["actualQueryCost"] is None
    (call,) = admin.calls(shop)[before:]
    assert call["cost"] == 0 and call["refused"] == "MAX_COST_EXCEEDED"


def test_the_combined_read_resolves_returns_lines_rfos_and_deliveries(standin, admin):
    # A shop whose limit and bucket both let the 2,155-point document run.
    shop = f"docs-big-{uuid.uuid4().hex[:8]}.myshopify.com"
    admin.create_shop(shop, TOKEN, bucket_size=5000, max_query_cost=5000)
    order, opened = _order_with_two_returns(standin, admin, shop)
    body = gql(standin, shop, ORDER_WITH_RETURNS, {"id": order["id"]})
    assert "errors" not in body
    assert body["extensions"]["cost"]["requestedQueryCost"] == ORDER_WITH_RETURNS_COST
    returns = body["data"]["order"]["returns"]["nodes"]
    assert [(r["name"], r["status"]) for r in returns] == [("#4100-R1", "OPEN"), ("#4100-R2", "REQUESTED")]
    first, second = returns
    assert first["id"] == opened["id"]
    (line,) = first["returnLineItems"]["nodes"]
    assert line["quantity"] == 1 and line["fulfillmentLineItem"]["lineItem"] == {
        "id": "gid://shopify/LineItem/410"
    }
    (rfo,) = first["reverseFulfillmentOrders"]["nodes"]
    (delivery,) = rfo["reverseDeliveries"]["nodes"]
    assert delivery["deliverable"] == {"tracking": {"number": "3SRET1", "url": "https://t.example/3SRET1"}}
    assert second["reverseFulfillmentOrders"]["nodes"] == []  # none while REQUESTED
    assert second["returnLineItems"]["nodes"][0]["fulfillmentLineItem"]["lineItem"]["id"].endswith("/411")
    # what is left to return: one of line 410; nothing of 411
    left = body["data"]["returnableFulfillments"]
    lines = [n for f in left["nodes"] for n in f["returnableFulfillmentLineItems"]["nodes"]]
    assert [(n["fulfillmentLineItem"]["lineItem"]["id"], n["quantity"]) for n in lines] == [
        ("gid://shopify/LineItem/410", 1)
    ]
    assert left["pageInfo"]["hasNextPage"] is False


def test_the_recorded_cost_model_prices_the_combined_read_under_the_limit(standin, admin, shop):
    order, _ = _order_with_two_returns(standin, admin, shop)
    admin.set_throttle(shop, cost_model="recorded")
    body = gql(standin, shop, ORDER_WITH_RETURNS, {"id": order["id"]})
    assert "errors" not in body and len(body["data"]["order"]["returns"]["nodes"]) == 2
    assert body["extensions"]["cost"]["requestedQueryCost"] == ORDER_WITH_RETURNS_COST_RECORDED


# --- the single-query limit -----------------------------------------------------------------


def test_the_limit_is_on_the_requested_cost_1000_passes_1001_does_not(standin, admin, shop):
    at_limit = gql(standin, shop, "{ orders(first: 998) { nodes { id } } }")  # 2 + 998
    assert "errors" not in at_limit and at_limit["extensions"]["cost"]["requestedQueryCost"] == 1000
    above = gql(standin, shop, "{ orders(first: 999) { nodes { id } } }")
    assert above["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert above["errors"][0]["extensions"]["cost"] == 1001
    admin.set_throttle(shop, max_query_cost=2000)
    assert "errors" not in gql(standin, shop, "{ orders(first: 999) { nodes { id } } }")


# --- the recorded cost model against Shopify's own figures ----------------------------------

# Recorded figures the model does not reproduce: introspection (`__type`, not priced), four reads
# with nested `first: 250` connections (recorded 978, model 546: which factor Shopify uses at 250
# is not pinned down by the recordings), and two fulfilment-order mutations of other APIs.
KNOWN_MISSES = {
    "schema",
    "approveMissingHydrate",
    "declineMissingHydrate",
    "coldReturnHydrate",
    "fulfillmentOrderHold",
    "fulfillmentTrackingUpdate",
}


def _recorded_costs() -> list[tuple[str, str, str, dict[str, Any], int]]:
    found: list[tuple[str, str, str, dict[str, Any], int]] = []

    def walk(node: Any, version: str, name: str) -> None:
        if isinstance(node, dict):
            payload = (
                (node.get("response") or {}).get("payload")
                if isinstance(node.get("response"), dict)
                else None
            )
            if isinstance(node.get("query"), str) and isinstance(payload, dict):
                cost = (payload.get("extensions") or {}).get("cost")
                if cost and cost.get("requestedQueryCost") is not None:
                    found.append(
                        (
                            name,
                            version,
                            node["query"],
                            node.get("variables") or {},
                            cost["requestedQueryCost"],
                        )
                    )
            for key, value in node.items():
                walk(value, version, key)
        elif isinstance(node, list):
            for value in node:
                walk(value, version, name)

    for path in sorted(CAPTURES.glob("*.json")):
        capture = json.loads(path.read_text())
        walk(capture, capture.get("apiVersion") or "2026-04", path.stem)
    return found


def test_the_recorded_model_reproduces_shopifys_requested_costs():
    matched, missed = 0, []
    for name, version, text, variables, recorded in _recorded_costs():
        prepared = schema_mod.prepare(version, text)
        operation = prepared.operation(None)
        assert operation is not None and not prepared.errors
        ours = query_cost(schema_mod.get_schema(version), prepared.document, operation, variables, "recorded")
        if ours == recorded:
            matched += 1
        else:
            missed.append((name, recorded, ours))
    assert {name for name, _, _ in missed} <= KNOWN_MISSES, missed
    assert matched >= 180 and len(missed) <= 8


def test_the_recorded_model_over_http_gives_the_recorded_figure(standin, admin, shop):
    # returnableFulfillments(first: 5) x returnableFulfillmentLineItems(first: 5): Shopify sent 41.
    admin.set_throttle(shop, cost_model="recorded")
    order = admin.create_order(shop, "#4200", [{"quantity": 1}])
    body = gql(
        standin,
        shop,
        """query($orderId: ID!) { returnableFulfillments(orderId: $orderId, first: 5) { nodes {
        fulfillment { id } returnableFulfillmentLineItems(first: 5) { nodes {
        fulfillmentLineItem { id lineItem { id title } } quantity } } } } }""",
        {"orderId": order["id"]},
    )
    assert body["extensions"]["cost"]["requestedQueryCost"] == 41
    admin.set_throttle(shop, cost_model="standin")
    body = gql(standin, shop, "{ shop { name } }")
    assert body["extensions"]["cost"]["requestedQueryCost"] == 1
