"""ShopifyAPI over a fake client that checks every request against the 2026-07 schema (document and
variables, as Shopify would) and answers with Shopify-shaped data; plus userErrors classification
(return-line planning is pure: tests/test_lines.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from graphql import GraphQLSchema, OperationDefinitionNode, parse, validate
from graphql.execution.values import get_variable_values

from tests.shopify.conftest import CAPTURES_DIR
from workers.shopify import api as api_module
from workers.shopify.api import ShopifyAPI, UserErrors, classify_user_errors
from workers.shopify.client import Endpoint, NotFound, StaticToken, operation_of
from workers.shopify.models import ReturnableLine, ReturnLineInput

ENDPOINT = Endpoint(
    "acme-nl.myshopify.com", "https://acme-nl.myshopify.com/admin/api/2026-07/graphql.json", StaticToken("t")
)
ORDER = "gid://shopify/Order/8980220018994"
RETURN = "gid://shopify/Return/15264809266"
RFO = "gid://shopify/ReverseFulfillmentOrder/14864154930"


class FakeClient:
    """Validates like Shopify, records like a spy, answers from per-operation handlers."""

    def __init__(
        self, schema: GraphQLSchema, handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]
    ):
        self.schema = schema
        self.endpoint = ENDPOINT
        self.handlers = handlers
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def execute(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        variables = variables or {}
        ast = parse(document)
        assert validate(self.schema, ast) == []
        [operation] = [d for d in ast.definitions if isinstance(d, OperationDefinitionNode)]
        coerced = get_variable_values(self.schema, operation.variable_definitions or [], variables)
        assert not isinstance(coerced, list), [error.message for error in coerced]
        name = operation_of(document)[1]
        self.sent.append((name, variables))
        return self.handlers[name](variables)

    def names(self) -> list[str]:
        return [name for name, _ in self.sent]


def return_node(status: str, *, rfos: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": RETURN,
        "name": "#1880-R1",
        "status": status,
        "returnLineItems": {
            "nodes": [
                {
                    "id": "gid://shopify/ReturnLineItem/1",
                    "quantity": 1,
                    "fulfillmentLineItem": {
                        "id": "gid://shopify/FulfillmentLineItem/11",
                        "lineItem": {"id": "gid://shopify/LineItem/101"},
                    },
                },
                {},  # an unverified return line: the inline fragment selects nothing
            ]
        },
        "reverseFulfillmentOrders": {"nodes": rfos or []},
    }


OPEN_RFOS = [
    {
        "id": RFO,
        "reverseDeliveries": {
            "nodes": [
                {
                    "id": "gid://shopify/ReverseDelivery/1",
                    "deliverable": {"tracking": {"number": "3SSCLD123456789", "url": None}},
                }
            ]
        },
    }
]


@pytest.fixture
def make_api(schema_2026_07: GraphQLSchema) -> Callable[..., tuple[ShopifyAPI, FakeClient]]:
    api_module.clear_reason_cache()

    def build(**handlers: Callable[[dict[str, Any]], dict[str, Any]]) -> tuple[ShopifyAPI, FakeClient]:
        client = FakeClient(schema_2026_07, handlers)
        return ShopifyAPI(client), client  # type: ignore[arg-type]

    yield build
    api_module.clear_reason_cache()


# --- reads ---------------------------------------------------------------------------------------


def test_access_scopes(make_api: Callable[..., Any]) -> None:
    scopes = [{"handle": "read_orders"}, {"handle": "write_returns"}]
    api, _ = make_api(AccessScopes=lambda v: {"currentAppInstallation": {"accessScopes": scopes}})
    assert api.access_scopes() == ["read_orders", "write_returns"]


def test_find_order_gid_searches_by_name_and_insists_on_an_exact_match(make_api: Callable[..., Any]) -> None:
    nodes = {"name:#1106": [{"id": ORDER, "name": "#1106"}], "name:#11": [{"id": ORDER, "name": "#1106"}]}
    api, client = make_api(FindOrderByName=lambda v: {"orders": {"nodes": nodes.get(v["query"], [])}})
    assert api.find_order_gid("#1106") == ORDER
    assert api.find_order_gid("#11") is None  # a fuzzy hit is not the order
    assert api.find_order_gid("#9999") is None
    assert client.sent[0] == ("FindOrderByName", {"query": "name:#1106"})


def _page(nodes: list[dict[str, Any]], cursor: str | None = None) -> dict[str, Any]:
    return {"nodes": nodes, "pageInfo": {"hasNextPage": cursor is not None, "endCursor": cursor}}


def _returnable(fli: str, line_item: str, quantity: int) -> dict[str, Any]:
    line = {"quantity": quantity, "fulfillmentLineItem": {"id": fli, "lineItem": {"id": line_item}}}
    return {
        "id": "gid://shopify/ReturnableFulfillment/1",
        "returnableFulfillmentLineItems": {"nodes": [line]},
    }


def _snapshot(**extra: Any) -> dict[str, Any]:
    order = {
        "id": ORDER,
        "name": "#1880",
        "tags": ["Sendcloud Return: Exchange", "vip"],
        "note": "Gift",
        "lineItems": _page([{"id": "gid://shopify/LineItem/101", "quantity": 2, "unfulfilledQuantity": 0}]),
        "returns": _page([return_node("OPEN", rfos=OPEN_RFOS)]),
    }
    return {
        "order": order,
        "returnableFulfillments": _page([_returnable("F1", "gid://shopify/LineItem/101", 1)]),
        **extra,
    }


def _reasons(*handles: str) -> dict[str, Any]:
    nodes = [
        {"id": f"gid://shopify/ReturnReasonDefinition/{n}", "handle": h, "deleted": False}
        for n, h in enumerate(handles)
    ]
    return {"returnReasonDefinitions": _page(nodes)}


def test_the_order_is_read_in_one_request_with_its_returns_and_what_is_returnable(
    make_api: Callable[..., Any],
) -> None:
    api, client = make_api(
        OrderSnapshotWithReasons=lambda v: _snapshot(**_reasons("style", "other-reason")),
        OrderSnapshot=lambda v: _snapshot(),
    )
    live = api.order(ORDER)
    assert live is not None
    assert live.tags == ("Sendcloud Return: Exchange", "vip") and live.note == "Gift"
    assert live.line_items == {"gid://shopify/LineItem/101": (2, 0)}
    [ret] = live.returns
    assert (ret.gid, ret.status, ret.lines) == (RETURN, "OPEN", (("gid://shopify/LineItem/101", 1),))
    assert ret.reverse_fulfillment_order_gids == (RFO,)
    assert ret.tracking_numbers == ("3SSCLD123456789",)
    assert live.returnable == (ReturnableLine("F1", "gid://shopify/LineItem/101", 1),)
    # The shop's reason definitions came with the first read and are not asked for again.
    assert api.reason_definition_id("style") == "gid://shopify/ReturnReasonDefinition/0"
    assert api.order(ORDER) is not None
    assert client.names() == ["OrderSnapshotWithReasons", "OrderSnapshot"]


def test_an_order_larger_than_a_page_is_read_on_in_pages(make_api: Callable[..., Any]) -> None:
    first = _snapshot()
    first["order"]["returns"] = _page([return_node("OPEN")], cursor="r1")
    first["order"]["lineItems"] = _page(
        [{"id": "gid://shopify/LineItem/101", "quantity": 2, "unfulfilledQuantity": 0}], cursor="l1"
    )
    first["returnableFulfillments"] = _page([_returnable("F1", "L1", 1)], cursor="f1")
    second_return = {**return_node("CLOSED"), "id": "gid://shopify/Return/2"}
    api, client = make_api(
        OrderSnapshotWithReasons=lambda v: {**first, **_reasons("style")},
        OrderReturnsPage=lambda v: {"order": {"returns": _page([second_return])}},
        OrderLinesPage=lambda v: {
            "order": {
                "lineItems": _page(
                    [{"id": "gid://shopify/LineItem/102", "quantity": 1, "unfulfilledQuantity": 1}]
                )
            }
        },
        ReturnableFulfillments=lambda v: {"returnableFulfillments": _page([_returnable("F2", "L2", 3)])},
    )
    live = api.order(ORDER)
    assert live is not None
    assert [r.gid for r in live.returns] == [RETURN, "gid://shopify/Return/2"]
    assert set(live.line_items) == {"gid://shopify/LineItem/101", "gid://shopify/LineItem/102"}
    assert [line.fulfillment_line_item_gid for line in live.returnable or ()] == ["F1", "F2"]
    assert sorted(name for name, _ in client.sent[1:]) == [
        "OrderLinesPage",
        "OrderReturnsPage",
        "ReturnableFulfillments",
    ]
    assert {v["after"] for _, v in client.sent[1:]} == {"r1", "l1", "f1"}


def test_lines_that_fill_their_nested_page_are_read_again_with_a_larger_one(
    make_api: Callable[..., Any],
) -> None:
    """The snapshot asks for a page of 10 lines per return and per fulfilment (a fifth of the
    requested cost of 50); a page that comes back full may have cut lines off, so the whole
    snapshot is read again with 50, and the run sees every line."""

    def snapshot(v: dict[str, Any]) -> dict[str, Any]:
        lines = [
            {"quantity": 1, "fulfillmentLineItem": {"id": f"F{n}", "lineItem": {"id": f"L{n}"}}}
            for n in range(min(12, v["items"]))  # the fulfilment has 12 returnable lines
        ]
        fulfillment = {"id": "RF1", "returnableFulfillmentLineItems": {"nodes": lines}}
        return {**_snapshot(returnableFulfillments=_page([fulfillment])), **_reasons("style")}

    api, client = make_api(OrderSnapshotWithReasons=snapshot, OrderSnapshot=snapshot)
    live = api.order(ORDER)
    assert live is not None
    assert len(live.returnable or ()) == 12
    assert [(name, v["items"]) for name, v in client.sent] == [
        ("OrderSnapshotWithReasons", 10),
        ("OrderSnapshot", 50),
    ]
    client.sent.clear()
    api.order(ORDER)  # the next order read starts small again
    assert [v["items"] for _, v in client.sent] == [10, 50]


def test_lines_within_their_page_are_read_once(make_api: Callable[..., Any]) -> None:
    api, client = make_api(OrderSnapshotWithReasons=lambda v: {**_snapshot(), **_reasons("style")})
    assert api.order(ORDER) is not None
    assert [(name, v["items"]) for name, v in client.sent] == [("OrderSnapshotWithReasons", 10)]


def test_a_read_too_dear_for_the_shop_is_asked_for_in_smaller_pages(make_api: Callable[..., Any]) -> None:
    from workers.shopify.errors import CostTooHigh

    def snapshot(v: dict[str, Any]) -> dict[str, Any]:
        if v["returns"] > 1:
            raise CostTooHigh("OrderSnapshotWithReasons", 705, 300)
        return {**_snapshot(), **_reasons("style")}

    api, client = make_api(OrderSnapshotWithReasons=snapshot)
    assert api.order(ORDER) is not None
    assert [v["returns"] for _, v in client.sent] == [2, 1]
    assert client.sent[-1][1]["lines"] == 25


def test_a_read_that_never_fits_says_so(make_api: Callable[..., Any]) -> None:
    from workers.shopify.errors import CostTooHigh

    def snapshot(v: dict[str, Any]) -> dict[str, Any]:
        raise CostTooHigh("OrderSnapshotWithReasons", 90, 40)

    api, _ = make_api(OrderSnapshotWithReasons=snapshot)
    with pytest.raises(CostTooHigh, match="at most 40"):
        api.order(ORDER)


def test_an_unknown_order_is_none(make_api: Callable[..., Any]) -> None:
    def wrong_type(v: dict[str, Any]) -> dict[str, Any]:
        raise NotFound([{"message": "invalid id", "extensions": {"code": "RESOURCE_NOT_FOUND"}}])

    api, _ = make_api(OrderSnapshotWithReasons=lambda v: {"order": None, **_reasons("style")})
    assert api.order(ORDER) is None
    api, _ = make_api(OrderSnapshotWithReasons=wrong_type)
    assert api.order("gid://shopify/Product/1") is None


def test_returnable_lines_pages_through_fulfillments(make_api: Callable[..., Any]) -> None:
    def fulfillment(fli: str, line_item: str, quantity: int) -> dict[str, Any]:
        line = {"quantity": quantity, "fulfillmentLineItem": {"id": fli, "lineItem": {"id": line_item}}}
        return {
            "id": "gid://shopify/ReturnableFulfillment/1",
            "returnableFulfillmentLineItems": {"nodes": [line]},
        }

    pages = {
        None: {
            "nodes": [fulfillment("F1", "L1", 2), fulfillment("F0", "L1", 0)],
            "pageInfo": {"hasNextPage": True, "endCursor": "c1"},
        },
        "c1": {"nodes": [fulfillment("F2", "L1", 1)], "pageInfo": {"hasNextPage": False, "endCursor": "c2"}},
    }
    api, client = make_api(ReturnableFulfillments=lambda v: {"returnableFulfillments": pages[v["after"]]})
    assert api.returnable_lines(ORDER) == [ReturnableLine("F1", "L1", 2), ReturnableLine("F2", "L1", 1)]
    assert [v["after"] for _, v in client.sent] == [None, "c1"]


def test_all_reason_definitions_are_read_in_one_query_once_per_shop(make_api: Callable[..., Any]) -> None:
    definitions = {
        "style": "gid://shopify/ReturnReasonDefinition/9",
        "other-reason": "gid://shopify/ReturnReasonDefinition/5",
        "too-big": "gid://shopify/ReturnReasonDefinition/8",
    }

    def answer(v: dict[str, Any]) -> dict[str, Any]:
        nodes = [{"id": gid, "handle": handle, "deleted": False} for handle, gid in definitions.items()]
        return {
            "returnReasonDefinitions": {"nodes": nodes, "pageInfo": {"hasNextPage": False, "endCursor": None}}
        }

    api, client = make_api(ReturnReasonDefinitions=answer)
    assert api.reason_definition_id("style") == definitions["style"]
    assert api.reason_definition_id("too-big") == definitions["too-big"]
    assert api.reason_definition_id("nope") == definitions["other-reason"]  # falls back to Other
    assert client.names() == ["ReturnReasonDefinitions"]  # one query; the rest from the cache


def test_reason_definitions_follow_every_page(make_api: Callable[..., Any]) -> None:
    pages = {
        None: {
            "nodes": [{"id": "gid://shopify/ReturnReasonDefinition/1", "handle": "style", "deleted": True}],
            "pageInfo": {"hasNextPage": True, "endCursor": "p2"},
        },
        "p2": {
            "nodes": [{"id": "gid://shopify/ReturnReasonDefinition/2", "handle": "style", "deleted": False}],
            "pageInfo": {"hasNextPage": False, "endCursor": None},
        },
    }
    api, client = make_api(ReturnReasonDefinitions=lambda v: {"returnReasonDefinitions": pages[v["after"]]})
    # A live definition wins over a deleted one with the same handle.
    assert api.reason_definitions() == {"style": "gid://shopify/ReturnReasonDefinition/2"}
    assert [v["after"] for _, v in client.sent] == [None, "p2"]


# --- mutations: variables as Shopify must receive them --------------------------------------------


def _ok(root: str, node: dict[str, Any] | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda v: {root: {"return": node, "userErrors": []}}


LINES = [
    ReturnLineInput(
        "gid://shopify/FulfillmentLineItem/11",
        1,
        "gid://shopify/ReturnReasonDefinition/9",
        "Het staat me niet",
        "Valt te klein",
    )
]


def test_return_request_sends_definition_ids_and_exactly_the_buyers_note(
    make_api: Callable[..., Any],
) -> None:
    api, client = make_api(ReturnRequest=_ok("returnRequest", return_node("REQUESTED")))
    silent_buyer = ReturnLineInput("gid://shopify/FulfillmentLineItem/12", 1, None, "Rent", None)
    ret = api.return_request(ORDER, [*LINES, silent_buyer])
    assert ret.status == "REQUESTED" and ret.reverse_fulfillment_order_gids == ()
    [(_, variables)] = client.sent
    assert variables == {
        "input": {
            "orderId": ORDER,
            "returnLineItems": [
                {
                    "fulfillmentLineItemId": "gid://shopify/FulfillmentLineItem/11",
                    "quantity": 1,
                    "returnReasonDefinitionId": "gid://shopify/ReturnReasonDefinition/9",
                    "customerNote": "Valt te klein",
                },
                # A buyer who wrote nothing has no customer note (never the reason text).
                {
                    "fulfillmentLineItemId": "gid://shopify/FulfillmentLineItem/12",
                    "quantity": 1,
                    "returnReason": "OTHER",
                },
            ],
        }
    }


def test_return_create_sends_exactly_the_reason_text_as_the_reason_note(make_api: Callable[..., Any]) -> None:
    api, client = make_api(ReturnCreate=_ok("returnCreate", return_node("OPEN", rfos=OPEN_RFOS)))
    no_definition = ReturnLineInput("gid://shopify/FulfillmentLineItem/12", 2, None, "Rent")
    no_text = ReturnLineInput(
        "gid://shopify/FulfillmentLineItem/13", 1, "gid://shopify/ReturnReasonDefinition/8", None
    )
    ret = api.return_create(ORDER, [*LINES, no_definition, no_text])
    assert ret.status == "OPEN" and ret.reverse_fulfillment_order_gids == (RFO,)
    [(_, variables)] = client.sent
    sent = variables["returnInput"]
    assert sent["orderId"] == ORDER and sent["notifyCustomer"] is False
    first, second, third = sent["returnLineItems"]
    assert first["returnReasonDefinitionId"] == "gid://shopify/ReturnReasonDefinition/9"
    assert first["returnReasonNote"] == "Het staat me niet"  # the buyer's note is not mixed in
    assert "returnReason" not in first  # the deprecated enum only when no definition is known
    assert second["returnReason"] == "OTHER" and second["returnReasonNote"] == "Rent"
    assert "returnReasonNote" not in third


def test_approve_decline_close_cancel(make_api: Callable[..., Any]) -> None:
    api, client = make_api(
        ReturnApproveRequest=_ok("returnApproveRequest", return_node("OPEN", rfos=OPEN_RFOS)),
        ReturnDeclineRequest=_ok("returnDeclineRequest", return_node("DECLINED")),
        ReturnClose=_ok("returnClose", return_node("CLOSED")),
        ReturnCancel=_ok("returnCancel", return_node("CANCELED")),
    )
    assert api.approve_request(RETURN).status == "OPEN"
    assert api.decline_request(RETURN).status == "DECLINED"
    assert api.close(RETURN).status == "CLOSED"
    assert api.cancel(RETURN).status == "CANCELED"
    sent = dict(client.sent)
    assert sent["ReturnApproveRequest"] == {"input": {"id": RETURN, "notifyCustomer": False}}
    assert sent["ReturnDeclineRequest"] == {
        "input": {"id": RETURN, "declineReason": "OTHER", "notifyCustomer": False}
    }
    assert sent["ReturnClose"] == {"id": RETURN} and sent["ReturnCancel"] == {"id": RETURN}


def test_declining_an_already_declined_return_is_a_success(make_api: Callable[..., Any]) -> None:
    already = {
        "field": ["input", "id"],
        "message": "The return is already declined.",
        "code": "INVALID_STATE",
    }
    api, client = make_api(
        ReturnDeclineRequest=lambda v: {"returnDeclineRequest": {"return": None, "userErrors": [already]}},
        ReturnDetails=lambda v: {"return": return_node("DECLINED")},
    )
    assert api.decline_request(RETURN).status == "DECLINED"
    assert client.names() == ["ReturnDeclineRequest", "ReturnDetails"]


def test_a_mutation_with_user_errors_raises_them_classified(make_api: Callable[..., Any]) -> None:
    error = {
        "field": ["returnInput", "returnLineItems", "0", "quantity"],
        "message": "Return line item has an invalid quantity.",
        "code": "INVALID",
    }
    api, _ = make_api(ReturnCreate=lambda v: {"returnCreate": {"return": None, "userErrors": [error]}})
    with pytest.raises(UserErrors) as raised:
        api.return_create(ORDER, LINES)
    assert raised.value.kind == "rejected"
    assert raised.value.operation == "ReturnCreate"
    assert raised.value.messages == ["Return line item has an invalid quantity."]


def test_add_tracking_covers_every_line_without_notifying(make_api: Callable[..., Any]) -> None:
    delivery = {"reverseDelivery": {"id": "gid://shopify/ReverseDelivery/1"}, "userErrors": []}
    api, client = make_api(
        ReverseDeliveryCreateWithShipping=lambda v: {"reverseDeliveryCreateWithShipping": delivery}
    )
    api.add_tracking(RFO, "3SSCLD123456789", "https://tracking.example.com/3SSCLD123456789")
    api.add_tracking(RFO, "3SSCLD2", None)
    assert client.sent[0][1] == {
        "reverseFulfillmentOrderId": RFO,
        "trackingInput": {"number": "3SSCLD123456789", "url": "https://tracking.example.com/3SSCLD123456789"},
    }
    assert client.sent[1][1]["trackingInput"] == {"number": "3SSCLD2"}


def test_tags_and_note(make_api: Callable[..., Any]) -> None:
    tags_after = ["Sendcloud Return: Exchange", "vip"]
    api, client = make_api(
        TagsAdd=lambda v: {"tagsAdd": {"node": {"id": ORDER, "tags": tags_after}, "userErrors": []}},
        TagsRemove=lambda v: {"tagsRemove": {"node": {"id": ORDER, "tags": ["vip"]}, "userErrors": []}},
        OrderUpdateNote=lambda v: {"orderUpdate": {"order": {"id": ORDER, "note": "n"}, "userErrors": []}},
    )
    assert api.tags_add(ORDER, ["Sendcloud Return: Exchange"]) == tuple(tags_after)
    assert api.tags_remove(ORDER, ["Sendcloud Return: Exchange"]) == ("vip",)
    api.set_note(ORDER, "n")
    sent = dict(client.sent)
    assert sent["TagsAdd"] == {"id": ORDER, "tags": ["Sendcloud Return: Exchange"]}
    assert sent["OrderUpdateNote"] == {"input": {"id": ORDER, "note": "n"}}  # never tags


# --- classify_user_errors ------------------------------------------------------------------------

# Exactly as captured (shared/shopify/captures, API 2026-04).
CAPTURED = {
    "rejected": [
        {
            "field": ["input", "returnLineItems", "0", "quantity"],
            "message": "Return line item has an invalid quantity.",
            "code": "INVALID",
        },
        {
            "field": ["returnInput", "returnLineItems", "0", "quantity"],
            "message": "Return line item has an invalid quantity.",
            "code": "INVALID",
        },
    ],
    "conflict": [
        {
            "field": ["input", "id"],
            "code": "INVALID_STATE",
            "message": "Return is not approvable. Only returns with status REQUESTED can be approved.",
        },
        {
            "field": ["input", "id"],
            "code": "INVALID_STATE",
            "message": (
                "Return is not declinable. Only non-refunded returns with status REQUESTED can be declined."
            ),
        },
        {"field": ["input", "id"], "message": "The return is already declined.", "code": "INVALID_STATE"},
        {"field": ["id"], "message": "Return is not cancelable.", "code": "INVALID_STATE"},
        {"field": ["id"], "message": "Return status is invalid.", "code": "INVALID_STATE"},
        {
            "field": ["reverseDeliveryLineItems", "0", "quantity"],
            "code": None,
            "message": "cannot deliver more items than are returned",
        },
    ],
    "invalid": [
        {"field": ["id"], "message": "Return not found.", "code": "NOT_FOUND"},
        {
            "field": ["input", "returnLineItems", "1", "fulfillmentLineItemId"],
            "message": "Fulfillment Line Item was not found.",
            "code": "NOT_FOUND",
        },
        {
            "field": ["returnInput", "returnLineItems", "0"],
            "code": "NOT_FOUND",
            "message": "Return line items Either return reason or return reason definition must be provided",
        },
        {
            "field": ["input", "returnLineItems", "0", "returnReason"],
            "message": "Return reason can't be blank",
            "code": "BLANK",
        },
        {
            "field": ["returnInput", "returnLineItems", "0", "returnReasonNote"],
            "code": "BLANK",
            "message": (
                'Return line items return reason note The note is required when the return reason is "Other"'
            ),
        },
        {"field": None, "message": "Quantity must be greater than 0", "code": "GREATER_THAN"},
        {
            "field": ["reverseFulfillmentOrderId"],
            "message": "Reverse fulfillment order was not found.",
            "code": "NOT_FOUND",
        },
    ],
}


@pytest.mark.parametrize(
    ("kind", "error"), [(kind, error) for kind, errors in CAPTURED.items() for error in errors]
)
def test_captured_user_errors_are_classified(kind: str, error: dict[str, Any]) -> None:
    assert classify_user_errors([error]) == kind


def test_not_fulfilled_answers_wait() -> None:
    assert (
        classify_user_errors([{"field": ["returnInput"], "message": "Order has no returnable line items."}])
        == "waiting"
    )
    assert classify_user_errors([{"field": None, "message": "Line item is not fulfilled."}]) == "waiting"


def test_mixed_answers_take_the_most_final_kind() -> None:
    rejected = CAPTURED["rejected"][0]
    invalid = CAPTURED["invalid"][1]
    waiting = {"field": None, "message": "Line item is not fulfilled."}
    assert classify_user_errors([waiting, rejected]) == "rejected"
    assert classify_user_errors([rejected, invalid]) == "invalid"
    assert classify_user_errors([]) == "invalid"


@pytest.mark.skipif(not CAPTURES_DIR.is_dir(), reason="shared captures not present")
def test_every_captured_return_user_error_has_the_expected_kind() -> None:
    by_message = {e["message"]: kind for kind, errors in CAPTURED.items() for e in errors}
    seen: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in {
                    "returnRequest",
                    "returnCreate",
                    "returnApproveRequest",
                    "returnDeclineRequest",
                    "returnClose",
                    "returnCancel",
                } and isinstance(value, dict):
                    for error in value.get("userErrors") or []:
                        seen.add(error["message"])
                        assert classify_user_errors([error]) == by_message[error["message"]], error
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in CAPTURES_DIR.glob("2026-*.json"):
        walk(json.loads(path.read_text()))
    assert "Return line item has an invalid quantity." in seen
