"""Behaviour of the stand-in beyond the captures: auth, scopes, throttling, faults, seeding,
tags, inspection. Every test uses its own shop so tests stay independent."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pytest
import requests

from standin.admin import StandinAdmin
from standin.server import RunningStandin

TOKEN = "shpat_test"
_n = itertools.count(1)

RETURN_REQUEST = """mutation R($input: ReturnRequestInput!) { returnRequest(input: $input) {
  return { id name status reverseFulfillmentOrders(first: 5) { nodes { id } } }
  userErrors { field message code } } }"""
RETURN_CREATE = """mutation C($returnInput: ReturnInput!) { returnCreate(returnInput: $returnInput) {
  return { id name status reverseFulfillmentOrders(first: 5) { nodes { id } } }
  userErrors { field message code } } }"""
RETURNABLE = """query F($id: ID!) { returnableFulfillments(orderId: $id, first: 10) { nodes {
  returnableFulfillmentLineItems(first: 10) { nodes { quantity fulfillmentLineItem { id
  lineItem { id } } } } } } }"""


@pytest.fixture()
def shop(admin: StandinAdmin) -> str:
    domain = f"test-{uuid.uuid4().hex[:8]}.myshopify.com"
    admin.create_shop(domain, TOKEN)
    return domain


def gql(
    standin: RunningStandin,
    shop: str,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str = TOKEN,
    version: str = "2026-07",
) -> requests.Response:
    return requests.post(
        standin.graphql_url(shop, version),
        json={"query": query, "variables": variables or {}},
        headers={"X-Shopify-Access-Token": token},
        timeout=10,
    )


def new_order(
    admin: StandinAdmin, shop: str, fulfilled: bool = True, quantities: tuple[int, ...] = (1, 2)
) -> dict[str, Any]:
    base = 12695210000000 + next(_n) * 10
    return admin.create_order(
        shop,
        f"#{1100 + next(_n)}",
        [{"id": base + i, "quantity": q, "title": f"Item {i}"} for i, q in enumerate(quantities)],
        fulfilled=fulfilled,
    )


def returnable(standin: RunningStandin, shop: str, order_id: str) -> dict[str, int]:
    data = gql(standin, shop, RETURNABLE, {"id": order_id}).json()["data"]
    return {
        n["fulfillmentLineItem"]["id"]: n["quantity"]
        for f in data["returnableFulfillments"]["nodes"]
        for n in f["returnableFulfillmentLineItems"]["nodes"]
    }


# --- addressing and auth -------------------------------------------------------------------


def test_host_header_and_path_prefix_address_the_same_shop(standin, admin, shop):
    admin.create_order(shop, "#1001", [{"id": 1, "quantity": 1}], order_id=42)
    query = '{ orders(first: 5, query: "name:#1001") { nodes { id name } } }'
    by_path = gql(standin, shop, query).json()
    by_host = requests.post(
        f"{standin.url}/admin/api/2026-07/graphql.json",
        json={"query": query},
        timeout=10,
        headers={"Host": shop, "X-Shopify-Access-Token": TOKEN},
    ).json()
    assert by_path["data"] == by_host["data"]
    assert by_path["data"]["orders"]["nodes"] == [{"id": "gid://shopify/Order/42", "name": "#1001"}]


def test_wrong_token_gets_shopifys_401(standin, shop):
    response = gql(standin, shop, "{ shop { name } }", token="nope")
    assert response.status_code == 401
    assert response.json() == {
        "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
    }


def test_missing_scope_gives_access_denied(standin, admin, shop):
    order = new_order(admin, shop)
    admin.set_scopes(shop, TOKEN, ["read_orders", "read_returns"])
    body = gql(
        standin, shop, RETURN_CREATE, {"returnInput": {"orderId": order["id"], "returnLineItems": []}}
    ).json()
    assert body["data"] == {"returnCreate": None}
    error = body["errors"][0]
    assert error["extensions"]["code"] == "ACCESS_DENIED"
    assert error["extensions"]["requiredAccess"] == "`write_returns` access scope."
    assert error["path"] == ["returnCreate"]
    scopes = gql(standin, shop, "{ currentAppInstallation { accessScopes { handle } } }").json()
    assert {s["handle"] for s in scopes["data"]["currentAppInstallation"]["accessScopes"]} == {
        "read_orders",
        "read_returns",
    }


def test_unknown_argument_is_rejected_like_shopify(standin, shop):
    body = gql(standin, shop, "mutation { returnCreate(input: {}) { return { id } } }").json()
    codes = {e["extensions"]["code"] for e in body["errors"]}
    assert "argumentNotAccepted" in codes
    assert "data" not in body


def test_unmodelled_fields_resolve_to_null_or_empty(standin, admin, shop):
    order = new_order(admin, shop)
    body = gql(
        standin,
        shop,
        """query($id: ID!) { order(id: $id) { id customer { id }
        totalPriceSet { shopMoney { amount } } risks { level } } shop { name } }""",
        {"id": order["id"]},
    ).json()
    assert "errors" not in body
    assert body["data"]["order"]["customer"] is None


# --- returns behaviour ---------------------------------------------------------------------


def test_request_has_no_reverse_fulfillment_order_until_approved(standin, admin, shop):
    order = new_order(admin, shop)
    fli = next(iter(returnable(standin, shop, order["id"])))
    ret = gql(
        standin,
        shop,
        RETURN_REQUEST,
        {
            "input": {
                "orderId": order["id"],
                "returnLineItems": [{"fulfillmentLineItemId": fli, "quantity": 1, "returnReason": "OTHER"}],
            }
        },
    ).json()["data"]["returnRequest"]["return"]
    assert ret["status"] == "REQUESTED" and ret["reverseFulfillmentOrders"]["nodes"] == []
    assert ret["name"] == order["name"] + "-R1"
    approved = gql(
        standin,
        shop,
        """mutation($id: ID!) { returnApproveRequest(input: {id: $id}) {
        return { status reverseFulfillmentOrders(first: 5) { nodes { id } } } } }""",
        {"id": ret["id"]},
    ).json()["data"]["returnApproveRequest"]["return"]
    assert approved["status"] == "OPEN" and len(approved["reverseFulfillmentOrders"]["nodes"]) == 1


def test_same_item_cannot_be_returned_twice_and_batch_is_all_or_nothing(standin, admin, shop):
    order = new_order(admin, shop, quantities=(1, 2))
    flis = list(returnable(standin, shop, order["id"]))
    lines = [
        {"fulfillmentLineItemId": flis[1], "quantity": 1, "returnReason": "COLOR"},
        {"fulfillmentLineItemId": flis[0], "quantity": 2, "returnReason": "COLOR"},
    ]
    payload = gql(
        standin, shop, RETURN_CREATE, {"returnInput": {"orderId": order["id"], "returnLineItems": lines}}
    ).json()["data"]["returnCreate"]
    assert payload["return"] is None
    assert payload["userErrors"] == [
        {
            "field": ["returnInput", "returnLineItems", "1", "quantity"],
            "message": "Return line item has an invalid quantity.",
            "code": "INVALID",
        }
    ]
    assert returnable(standin, shop, order["id"]) == {flis[0]: 1, flis[1]: 2}  # nothing applied
    lines[1]["quantity"] = 1
    assert (
        gql(
            standin, shop, RETURN_CREATE, {"returnInput": {"orderId": order["id"], "returnLineItems": lines}}
        ).json()["data"]["returnCreate"]["return"]["status"]
        == "OPEN"
    )
    again = gql(
        standin, shop, RETURN_CREATE, {"returnInput": {"orderId": order["id"], "returnLineItems": [lines[1]]}}
    ).json()["data"]["returnCreate"]
    assert again["userErrors"][0]["message"] == "Return line item has an invalid quantity."


def test_order_fulfilled_later_becomes_returnable(standin, admin, shop):
    order = new_order(admin, shop, fulfilled=False, quantities=(1, 2))
    assert returnable(standin, shop, order["id"]) == {}
    admin.fulfill(shop, order["id"], [{"id": order["line_items"][1], "quantity": 1}])
    assert list(returnable(standin, shop, order["id"]).values()) == [1]
    admin.fulfill(shop, order["id"])  # the rest
    state = admin.state(shop)["orders"][0]
    assert len(state["fulfillments"]) == 2
    assert state["displayFulfillmentStatus"] == "FULFILLED"
    assert sorted(returnable(standin, shop, order["id"]).values()) == [1, 1, 1]


def test_demo_seed_orders_with_chosen_ids(standin, admin):
    import json
    from pathlib import Path

    seed = json.loads((Path(__file__).resolve().parents[2] / "standin/demo_seed.json").read_text())
    seed["shops"][0]["domain"] = "demo-" + uuid.uuid4().hex[:6] + ".myshopify.com"
    admin.load_seed(seed)
    domain = seed["shops"][0]["domain"]
    body = gql(
        standin,
        domain,
        """{ order(id: "gid://shopify/Order/5196695273621") { name
        lineItems(first: 5) { nodes { id quantity } } } }""",
        token="shpat_local_demo_token",
    ).json()
    assert body["data"]["order"]["name"] == "#1106"
    assert body["data"]["order"]["lineItems"]["nodes"] == [
        {"id": "gid://shopify/LineItem/12695210000533", "quantity": 1},
        {"id": "gid://shopify/LineItem/12695210000534", "quantity": 2},
    ]


# --- tags and orderUpdate ------------------------------------------------------------------


def test_tag_normalisation_and_order_update_overwrite(standin, admin, shop):
    order = admin.create_order(shop, "#2001", [{"id": 7, "quantity": 1}], tags=["Red"], note="keep?")
    add = """mutation($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) {
        node { ... on Order { tags } } userErrors { field message } } }"""
    tags = gql(standin, shop, add, {"id": order["id"], "tags": "b, red,A,  ,a"}).json()["data"]["tagsAdd"][
        "node"
    ]["tags"]
    assert tags == ["A", "b", "Red"]
    remove = add.replace("tagsAdd", "tagsRemove")
    tags = gql(standin, shop, remove, {"id": order["id"], "tags": ["red", "A"]}).json()["data"]["tagsRemove"][
        "node"
    ]["tags"]
    assert tags == ["b", "Red"]  # removal is case-sensitive, as recorded
    update = """mutation($input: OrderInput!) { orderUpdate(input: $input) {
        order { note tags } userErrors { field message } } }"""
    result = gql(
        standin, shop, update, {"input": {"id": order["id"], "note": "new", "tags": ["z", "Z", "y"]}}
    ).json()
    assert result["data"]["orderUpdate"]["order"] == {"note": "new", "tags": ["y", "z"]}
    state = admin.state(shop)["orders"][0]
    assert state["tags"] == ["y", "z"] and state["note"] == "new"


# --- throttling ----------------------------------------------------------------------------


def test_bucket_drains_then_throttled_in_shopify_shape(standin, admin, shop):
    admin.set_throttle(shop, bucket_size=25, restore_rate=1)
    first = gql(
        standin,
        shop,
        'mutation { tagsAdd(id: "gid://shopify/Order/1", tags: ["x"]) { userErrors { message } } }',
    ).json()
    cost = first["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 10
    assert cost["throttleStatus"]["maximumAvailable"] == 25
    assert cost["throttleStatus"]["restoreRate"] == 1
    statuses = []
    for _ in range(3):
        response = gql(
            standin,
            shop,
            'mutation { tagsAdd(id: "gid://shopify/Order/1", tags: ["x"]) { userErrors { message } } }',
        )
        statuses.append(response.json())
    throttled = statuses[-1]
    assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert "data" not in throttled
    assert throttled["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] < 10
    calls = admin.calls(shop)
    assert calls[-1]["throttled"] is True and calls[0]["throttled"] is False


def test_http429_mode_sends_retry_after(standin, admin, shop):
    admin.set_throttle(shop, bucket_size=10, restore_rate=1, throttle_mode="http429")
    mutation = 'mutation { tagsAdd(id: "gid://shopify/Order/1", tags: ["x"]) { userErrors { message } } }'
    assert gql(standin, shop, mutation).status_code == 200
    response = gql(standin, shop, mutation)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert admin.calls(shop)[-1]["status"] == 429


# --- faults --------------------------------------------------------------------------------


def _fault_pattern(standin: RunningStandin, admin: StandinAdmin, shop: str, seed: int) -> list[int]:
    admin.set_faults(shop, error_rate=0.5, seed=seed)
    return [gql(standin, shop, "{ shop { name } }").status_code for _ in range(20)]


def test_error_faults_are_reproducible_with_a_seed(standin, admin, shop):
    first = _fault_pattern(standin, admin, shop, seed=7)
    second = _fault_pattern(standin, admin, shop, seed=7)
    assert first == second
    assert set(first) == {200, 503}
    assert _fault_pattern(standin, admin, shop, seed=8) != first


def test_lost_response_applies_the_mutation(standin, admin, shop):
    order = admin.create_order(shop, "#3001", [{"id": 9, "quantity": 1}])
    admin.set_faults(shop, lost_response_rate=1.0, seed=1)
    with pytest.raises(requests.ConnectionError):
        gql(
            standin,
            shop,
            """mutation($id: ID!) { tagsAdd(id: $id, tags: ["lost"]) {
            userErrors { message } } }""",
            {"id": order["id"]},
        )
    admin.set_faults(shop)
    assert admin.state(shop)["orders"][0]["tags"] == ["lost"]
    assert admin.calls(shop)[-1]["fault"] == "lost_response"


def test_hang_holds_until_client_gives_up_without_blocking_others(standin, admin, shop):
    admin.set_faults(shop, hang_rate=1.0, seed=3)
    with pytest.raises(requests.Timeout):
        requests.post(
            standin.graphql_url(shop),
            json={"query": "{ shop { name } }"},
            headers={"X-Shopify-Access-Token": TOKEN},
            timeout=0.5,
        )
    other = f"other-{uuid.uuid4().hex[:6]}.myshopify.com"
    admin.create_shop(other, TOKEN)
    assert gql(standin, other, "{ shop { name } }").status_code == 200
    admin.set_faults(shop)


# --- inspection ----------------------------------------------------------------------------


def test_state_and_call_log_show_returns_and_tracking(standin, admin, shop):
    order = new_order(admin, shop, quantities=(1,))
    fli = next(iter(returnable(standin, shop, order["id"])))
    ret = gql(
        standin,
        shop,
        RETURN_CREATE,
        {
            "returnInput": {
                "orderId": order["id"],
                "returnLineItems": [
                    {
                        "fulfillmentLineItemId": fli,
                        "quantity": 1,
                        "returnReasonDefinitionId": "gid://shopify/ReturnReasonDefinition/9",
                        "returnReasonNote": "Het staat me niet",
                    }
                ],
            }
        },
    ).json()["data"]["returnCreate"]["return"]
    rfo = ret["reverseFulfillmentOrders"]["nodes"][0]["id"]
    gql(
        standin,
        shop,
        """mutation($rfo: ID!) { reverseDeliveryCreateWithShipping(
        reverseFulfillmentOrderId: $rfo, reverseDeliveryLineItems: [], notifyCustomer: false,
        trackingInput: {number: "3SXYZ", url: "https://t.example/3SXYZ"}) {
        reverseDelivery { id } userErrors { field message } } }""",
        {"rfo": rfo},
    )
    state = admin.state(shop)
    (saved,) = state["returns"]
    assert saved["status"] == "OPEN" and saved["orderId"] == order["id"]
    assert saved["lines"][0]["returnReasonDefinition"] == "style"
    assert saved["lines"][0]["returnReason"] == "STYLE"
    assert saved["lines"][0]["returnReasonNote"] == "Het staat me niet"
    delivery = saved["reverseFulfillmentOrders"][0]["reverseDeliveries"][0]
    assert delivery["trackingNumber"] == "3SXYZ"
    assert state["orders"][0]["returnStatus"] == "IN_PROGRESS"
    ops = [c["root_fields"] for c in admin.calls(shop)]
    assert ["returnCreate"] in ops and ["reverseDeliveryCreateWithShipping"] in ops
