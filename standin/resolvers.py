"""GraphQL resolvers over the plain state in state.py.

Only what the returns sync touches is modelled. Every other valid field resolves through
`default_resolver`: the attribute/key if present, else null — or, where the schema says non-null,
an empty value of the right type, so an unmodelled field never turns into an execution error.

Messages, codes and field paths come from the recorded captures (/work/shared/shopify/captures);
where no capture exists the wording follows Shopify's style and is marked "not recorded".
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
)

from standin import state as st
from standin.state import (
    REASON_BY_LEGACY,
    REASON_DEFINITIONS,
    FulfillmentLineItem,
    Order,
    Return,
    ReturnLineItem,
    ReverseDelivery,
    ReverseDeliveryLineItem,
    ReverseFulfillmentOrder,
    RfoLineItem,
    Shop,
    Store,
)


@dataclass
class RequestContext:
    store: Store
    shop: Shop
    scopes: frozenset[str]
    mutated: bool = False  # set when a mutation changed state (for lost-response faults)
    client_id: str | None = None  # the app the token was issued to; None for legacy tokens
    api_version: str = "2026-07"


# --- Defaults for unmodelled fields -------------------------------------------------------

_SCALAR_DEFAULTS: dict[str, Any] = {
    "String": "",
    "ID": "",
    "Int": 0,
    "Float": 0.0,
    "Boolean": False,
    "Decimal": "0.0",
    "Money": "0.0",
    "UnsignedInt64": "0",
    "JSON": {},
    "URL": "",
    "HTML": "",
    "FormattedString": "",
    "Color": "#000000",
    "UtcOffset": "+00:00",
    "BigInt": "0",
}


def _empty_value(of_type: Any) -> Any:
    if isinstance(of_type, GraphQLList):
        return []
    if isinstance(of_type, GraphQLScalarType):
        if of_type.name in ("DateTime", "Date"):
            return st.now_iso() if of_type.name == "DateTime" else st.now_iso()[:10]
        return _SCALAR_DEFAULTS.get(of_type.name, "")
    if isinstance(of_type, GraphQLEnumType):
        return next(iter(of_type.values))
    if isinstance(of_type, GraphQLObjectType):
        return {}  # its own fields resolve through this same default
    return None  # interface/union: nothing sensible to invent


def default_resolver(source: Any, info: GraphQLResolveInfo, **_args: Any) -> Any:
    name = info.field_name
    if isinstance(source, dict):
        value = source.get(name)
    else:
        value = getattr(source, name, None)
    if callable(value):
        value = value()
    if value is None and isinstance(info.return_type, GraphQLNonNull):
        return _empty_value(info.return_type.of_type)
    return value


def type_resolver(value: Any, _info: GraphQLResolveInfo, _abstract: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("__typename")
    return getattr(value, "typename", None)


# --- Connections ---------------------------------------------------------------------------


def _cursor(obj: Any, index: int) -> str:
    num = getattr(obj, "num", index)
    raw = json.dumps({"last_id": num, "last_value": str(num)}, separators=(",", ":"))
    return base64.b64encode(raw.encode()).decode()


def connection(
    items: list[Any],
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    reverse: bool = False,
    **_ignored: Any,
) -> dict[str, Any]:
    """A Relay connection over a Python list, with Shopify-style opaque cursors."""
    ordered = list(reversed(items)) if reverse else list(items)
    cursors = [_cursor(obj, i) for i, obj in enumerate(ordered)]
    start, end = 0, len(ordered)
    if after in cursors:
        start = cursors.index(after) + 1
    if before in cursors:
        end = cursors.index(before)
    window = list(range(start, max(start, end)))
    if first is not None:
        window = window[: max(0, first)]
    if last is not None:
        window = window[-last:] if last > 0 else []
    nodes = [ordered[i] for i in window]
    return {
        "nodes": nodes,
        "edges": [{"node": ordered[i], "cursor": cursors[i]} for i in window],
        "pageInfo": {
            "hasNextPage": bool(window) and window[-1] < len(ordered) - 1,
            "hasPreviousPage": bool(window) and window[0] > 0,
            "startCursor": cursors[window[0]] if window else None,
            "endCursor": cursors[window[-1]] if window else None,
        },
    }


def conn_of(getter: Callable[[Any], list[Any]]) -> Callable[..., dict[str, Any]]:
    def resolve(obj: Any, _info: GraphQLResolveInfo, **args: Any) -> dict[str, Any]:
        return connection(getter(obj), **args)

    return resolve


def attr(fn: Callable[[Any], Any]) -> Callable[..., Any]:
    return lambda obj, _info, **_a: fn(obj)


# --- Errors -----------------------------------------------------------------------------------


def user_error(field: list[str] | None, message: str, code: str | None = None) -> dict[str, Any]:
    return {"field": field, "message": message, "code": code}


def resource_not_found(value: Any) -> GraphQLError:
    # Shopify answers a gid of the wrong type with a top-level error, the field itself null.
    return GraphQLError(f"Invalid id: {value}", extensions={"code": "RESOURCE_NOT_FOUND"})


# Which scope each root field needs; fields not listed need none.
REQUIRED_SCOPE: dict[str, str] = {
    "order": "read_orders",
    "orders": "read_orders",
    "node": "read_orders",
    "nodes": "read_orders",
    "return": "read_returns",
    "returnableFulfillments": "read_returns",
    "returnableFulfillment": "read_returns",
    "reverseDelivery": "read_returns",
    "reverseFulfillmentOrder": "read_returns",
    "returnReasonDefinitions": "read_returns",
    "returnRequest": "write_returns",
    "returnApproveRequest": "write_returns",
    "returnDeclineRequest": "write_returns",
    "returnCreate": "write_returns",
    "returnClose": "write_returns",
    "returnReopen": "write_returns",
    "returnCancel": "write_returns",
    "returnProcess": "write_returns",
    "removeFromReturn": "write_returns",
    "reverseDeliveryCreateWithShipping": "write_returns",
    "reverseDeliveryShippingUpdate": "write_returns",
    "tagsAdd": "write_orders",
    "tagsRemove": "write_orders",
    "orderUpdate": "write_orders",
}


def check_scope(info: GraphQLResolveInfo) -> None:
    needed = REQUIRED_SCOPE.get(info.field_name)
    ctx: RequestContext = info.context
    if needed is None or needed in ctx.scopes:
        return
    # read_* is implied by write_* on Shopify.
    if needed.startswith("read_") and "write_" + needed[5:] in ctx.scopes:
        return
    required = f"`{needed}` access scope."
    raise GraphQLError(
        f"Access denied for {info.field_name} field. Required access: {required}",
        extensions={
            "code": "ACCESS_DENIED",
            "documentation": "https://shopify.dev/api/usage/access-scopes",
            "requiredAccess": required,
        },
    )


def scoped(fn: Callable[..., Any]) -> Callable[..., Any]:
    def resolve(obj: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        check_scope(info)
        return fn(info.context, **args)

    return resolve


def _typed(ctx: RequestContext, value: Any, typename: str) -> Any:
    """Look up a gid that must be of `typename`: None if absent, error if of another type."""
    parsed = st.parse_gid(value)
    if parsed is None or parsed[0] != typename:
        raise resource_not_found(value)
    return ctx.shop.lookup(value, typename)


# --- Query root ----------------------------------------------------------------------------

_QUERY_TERM = re.compile(r'(\w+):(?:"([^"]*)"|(\S+))')


def _filter_orders(orders: list[Order], query: str | None) -> list[Order]:
    """Support the filters the sync uses: name:, id:, tag:, return_status:."""
    if not query:
        return orders
    out = orders
    for key, quoted, bare in _QUERY_TERM.findall(query):
        value = quoted or bare
        if key == "name":
            wanted = value.lstrip("#").lower()
            out = [o for o in out if o.name.lstrip("#").lower() == wanted]
        elif key == "id":
            out = [o for o in out if str(o.num) == value.lstrip(">=<")]
        elif key == "tag":
            out = [o for o in out if value.lower() in (t.lower() for t in o.tags)]
        elif key == "return_status":
            out = [o for o in out if o.return_status().lower() == value.lower()]
    return out


def q_order(ctx: RequestContext, id: str) -> Order | None:
    return _typed(ctx, id, "Order")


def q_orders(
    ctx: RequestContext, query: str | None = None, sortKey: str | None = None, **args: Any
) -> dict[str, Any]:
    orders = sorted(
        ctx.shop.orders.values(), key=lambda o: (o.created_at, o.num) if sortKey == "CREATED_AT" else o.num
    )
    return connection(_filter_orders(orders, query), **args)


def _node(ctx: RequestContext, value: Any) -> Any:
    obj = ctx.shop.objects.get(value) if isinstance(value, str) else None
    if obj is None and isinstance(value, str):
        parsed = st.parse_gid(value)
        if parsed and parsed[0] == "ReturnableFulfillment":
            ful = ctx.shop.lookup(st.gid("Fulfillment", parsed[1]), "Fulfillment")
            return _returnable(ctx.shop, ful) if ful else None
    return obj


def q_node(ctx: RequestContext, id: str) -> Any:
    return _node(ctx, id)


def q_nodes(ctx: RequestContext, ids: list[str]) -> list[Any]:
    return [_node(ctx, i) for i in ids]


def q_return(ctx: RequestContext, id: str) -> Return | None:
    return _typed(ctx, id, "Return")


def q_reverse_delivery(ctx: RequestContext, id: str) -> ReverseDelivery | None:
    return _typed(ctx, id, "ReverseDelivery")


def q_rfo(ctx: RequestContext, id: str) -> ReverseFulfillmentOrder | None:
    return _typed(ctx, id, "ReverseFulfillmentOrder")


def _returnable(shop: Shop, ful: st.Fulfillment) -> dict[str, Any] | None:
    lines = [
        {"fulfillmentLineItem": fli, "quantity": shop.returnable_quantity(fli)}
        for fli in ful.line_items
        if shop.returnable_quantity(fli) > 0
    ]
    if not lines:
        return None
    return {
        "__typename": "ReturnableFulfillment",
        "num": ful.num,
        "id": st.gid("ReturnableFulfillment", ful.num),
        "fulfillment": ful,
        "returnableFulfillmentLineItems": lines,
    }


def q_returnable_fulfillments(ctx: RequestContext, orderId: str, **args: Any) -> dict[str, Any]:
    order = _typed(ctx, orderId, "Order")
    if order is None:
        raise GraphQLError("Order does not exist.", extensions={"code": "NOT_FOUND"})
    items = [r for r in (_returnable(ctx.shop, f) for f in order.fulfillments) if r]
    return connection(items, **args)


def q_reason_definitions(ctx: RequestContext, **args: Any) -> dict[str, Any]:
    args.pop("handles", None)
    args.pop("ids", None)
    return connection(list(REASON_DEFINITIONS), **args)


def q_app_installation(ctx: RequestContext) -> dict[str, Any]:
    return {
        "__typename": "AppInstallation",
        "id": "gid://shopify/AppInstallation/1",
        "accessScopes": [{"handle": s, "description": s} for s in sorted(ctx.scopes)],
    }


# --- Return mutations --------------------------------------------------------------------------


def _return_payload(ret: Return | None, errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"return": ret, "userErrors": errors}


def _build_return(
    ctx: RequestContext, input_: dict[str, Any], prefix: str, requested: bool
) -> dict[str, Any]:
    """Shared by returnRequest (REQUESTED) and returnCreate (OPEN + reverse fulfilment order).
    The whole batch is validated before anything changes: one bad line fails the request."""
    shop, store = ctx.shop, ctx.store
    order = _typed(ctx, input_["orderId"], "Order")
    if order is None:
        # Not recorded; Shopify's usual wording for a missing order.
        return _return_payload(None, [user_error([prefix, "orderId"], "Order does not exist.", "NOT_FOUND")])
    errors: list[dict[str, Any]] = []
    planned: list[tuple[FulfillmentLineItem, dict[str, Any], str, Any]] = []
    asked: dict[int, int] = {}
    for i, line in enumerate(input_.get("returnLineItems") or []):
        path = [prefix, "returnLineItems", str(i)]
        fli_id = line.get("fulfillmentLineItemId")
        parsed = st.parse_gid(fli_id)
        if parsed is None or parsed[0] != "FulfillmentLineItem":
            raise resource_not_found(fli_id)
        fli = shop.lookup(fli_id, "FulfillmentLineItem")
        if fli is None or fli.fulfillment.order is not order:
            errors.append(
                user_error(
                    path + ["fulfillmentLineItemId"], "Fulfillment Line Item was not found.", "NOT_FOUND"
                )
            )
            continue
        legacy = line.get("returnReason")
        definition = None
        def_id = line.get("returnReasonDefinitionId")
        if def_id is not None:
            definition = next((d for d in REASON_DEFINITIONS if d.id == def_id), None)
            if definition is None:
                errors.append(
                    user_error(
                        path + ["returnReasonDefinitionId"],
                        "Return reason definition was not found.",
                        "NOT_FOUND",
                    )
                )  # not recorded
                continue
        if legacy is None and definition is None:
            if requested:
                errors.append(user_error(path + ["returnReason"], "Return reason can't be blank", "BLANK"))
            else:
                errors.append(
                    user_error(
                        path,
                        "Return line items Either return reason or return reason definition must be provided",
                        "NOT_FOUND",
                    )
                )
            continue
        note = line.get("returnReasonNote") or ""
        is_other = legacy == "OTHER" or (definition is not None and definition.handle == "other-reason")
        if not requested and is_other and not note.strip():
            errors.append(
                user_error(
                    path + ["returnReasonNote"],
                    "Return line items return reason note The note is required when the return "
                    'reason is "Other"',
                    "BLANK",
                )
            )
            continue
        qty = int(line.get("quantity") or 0)
        asked[id(fli)] = asked.get(id(fli), 0) + qty
        if qty <= 0 or asked[id(fli)] > shop.returnable_quantity(fli):
            errors.append(
                user_error(path + ["quantity"], "Return line item has an invalid quantity.", "INVALID")
            )
            continue
        planned.append((fli, line, legacy or definition.legacy, definition))
    if not planned and not errors:
        errors.append(
            user_error([prefix, "returnLineItems"], "Return must have at least one line item.", "BLANK")
        )
    if errors:
        return _return_payload(None, errors)
    ret = Return(
        num=store.next_id(),
        order=order,
        name=f"{order.name}-R{len(order.returns) + 1}",
        status="REQUESTED" if requested else "OPEN",
    )
    for fli, line, legacy, definition in planned:
        rli = ReturnLineItem(
            num=store.next_id(),
            ret=ret,
            fulfillment_line_item=fli,
            quantity=int(line["quantity"]),
            return_reason=legacy,
            reason_definition=definition or REASON_BY_LEGACY.get(legacy),
            return_reason_note=line.get("returnReasonNote") or "",
            customer_note=line.get("customerNote"),
        )
        ret.line_items.append(shop.register(rli))
    order.returns.append(shop.register(ret))
    if not requested:
        _open_rfo(ctx, ret)
    order.updated_at = st.now_iso()
    ctx.mutated = True
    return _return_payload(ret, [])


def _open_rfo(ctx: RequestContext, ret: Return) -> None:
    """A return that becomes OPEN gets its reverse fulfilment order (never while REQUESTED)."""
    rfo = ReverseFulfillmentOrder(num=ctx.store.next_id(), ret=ret)
    for rli in ret.line_items:
        rfo.line_items.append(
            ctx.shop.register(
                RfoLineItem(
                    num=ctx.store.next_id(), rfo=rfo, return_line_item=rli, total_quantity=rli.quantity
                )
            )
        )
    ret.rfos.append(ctx.shop.register(rfo))


def m_return_request(ctx: RequestContext, input: dict[str, Any]) -> dict[str, Any]:
    return _build_return(ctx, input, "input", requested=True)


def m_return_create(ctx: RequestContext, returnInput: dict[str, Any]) -> dict[str, Any]:
    return _build_return(ctx, returnInput, "returnInput", requested=False)


def _find_return(
    ctx: RequestContext, value: Any, field: list[str]
) -> tuple[Return | None, list[dict[str, Any]]]:
    ret = _typed(ctx, value, "Return")
    if ret is None:
        return None, [user_error(field, "Return not found.", "NOT_FOUND")]
    return ret, []


def _changed(ctx: RequestContext, ret: Return) -> dict[str, Any]:
    ret.order.updated_at = st.now_iso()
    ctx.mutated = True
    return _return_payload(ret, [])


def m_return_approve(ctx: RequestContext, input: dict[str, Any]) -> dict[str, Any]:
    ret, errors = _find_return(ctx, input["id"], ["input", "id"])
    if ret is None:
        return _return_payload(None, errors)
    if ret.status != "REQUESTED":
        return _return_payload(
            None,
            [
                user_error(
                    ["input", "id"],
                    "Return is not approvable. Only returns with status REQUESTED can be approved.",
                    "INVALID_STATE",
                )
            ],
        )
    ret.status = "OPEN"
    ret.request_approved_at = st.now_iso()
    _open_rfo(ctx, ret)
    return _changed(ctx, ret)


def m_return_decline(ctx: RequestContext, input: dict[str, Any]) -> dict[str, Any]:
    ret, errors = _find_return(ctx, input["id"], ["input", "id"])
    if ret is None:
        return _return_payload(None, errors)
    if ret.status == "DECLINED":
        return _return_payload(
            None, [user_error(["input", "id"], "The return is already declined.", "INVALID_STATE")]
        )
    if ret.status != "REQUESTED":
        return _return_payload(
            None,
            [
                user_error(
                    ["input", "id"],
                    "Return is not declinable. Only non-refunded returns with status "
                    "REQUESTED can be declined.",
                    "INVALID_STATE",
                )
            ],
        )
    ret.status = "DECLINED"
    ret.decline = {"reason": input.get("declineReason"), "note": input.get("declineNote")}
    return _changed(ctx, ret)


def m_return_close(ctx: RequestContext, id: str) -> dict[str, Any]:
    ret, errors = _find_return(ctx, id, ["id"])
    if ret is None:
        return _return_payload(None, errors)
    if ret.status == "CLOSED":
        return _return_payload(ret, [])  # idempotent, as recorded
    if ret.status != "OPEN":
        return _return_payload(None, [user_error(["id"], "Return status is invalid.", "INVALID_STATE")])
    ret.status = "CLOSED"
    ret.closed_at = st.now_iso()
    return _changed(ctx, ret)


def m_return_reopen(ctx: RequestContext, id: str) -> dict[str, Any]:
    ret, errors = _find_return(ctx, id, ["id"])
    if ret is None:
        return _return_payload(None, errors)
    if ret.status == "OPEN":
        return _return_payload(ret, [])  # idempotent, as recorded
    if ret.status != "CLOSED":
        return _return_payload(None, [user_error(["id"], "Return status is invalid.", "INVALID_STATE")])
    ret.status = "OPEN"
    ret.closed_at = None
    return _changed(ctx, ret)


def m_return_cancel(ctx: RequestContext, id: str, **_args: Any) -> dict[str, Any]:
    ret, errors = _find_return(ctx, id, ["id"])
    if ret is None:
        return _return_payload(None, errors)
    if ret.status == "CANCELED":
        return _return_payload(ret, [])  # idempotent, as recorded
    processed = any(li.processed_quantity for li in ret.line_items)
    if ret.status not in ("OPEN", "REQUESTED") or processed:
        return _return_payload(None, [user_error(["id"], "Return is not cancelable.", "INVALID_STATE")])
    ret.status = "CANCELED"
    return _changed(ctx, ret)


def m_return_process(ctx: RequestContext, input: dict[str, Any]) -> dict[str, Any]:
    ret, errors = _find_return(ctx, input["returnId"], ["input", "returnId"])
    if ret is None:
        return _return_payload(None, errors)
    plan: list[tuple[ReturnLineItem, int]] = []
    for i, line in enumerate(input.get("returnLineItems") or []):
        path = ["input", "returnLineItems", str(i)]
        rli = next((x for x in ret.line_items if x.id == line.get("id")), None)
        if rli is None:
            errors.append(user_error(path + ["id"], "Return line item was not found.", "NOT_FOUND"))
            continue
        qty = int(line.get("quantity") or 0)
        if qty <= 0 or qty > rli.quantity - rli.processed_quantity:
            errors.append(
                user_error(path + ["quantity"], "Return line item has an invalid quantity.", "INVALID")
            )
            continue
        plan.append((rli, qty))
    if not errors and ret.status != "OPEN":
        errors.append(
            user_error(["input", "returnId"], "Return status is invalid.", "INVALID_STATE")
        )  # not recorded
    if errors:
        return _return_payload(None, errors)
    for rli, qty in plan:
        rli.processed_quantity += qty
    return _changed(ctx, ret)


def m_remove_from_return(
    ctx: RequestContext, returnId: str, returnLineItems: list[dict[str, Any]] | None = None, **_args: Any
) -> dict[str, Any]:
    ret, errors = _find_return(ctx, returnId, ["returnId"])
    if ret is None:
        return _return_payload(None, errors)
    if ret.status not in ("OPEN", "REQUESTED"):
        return _return_payload(None, [user_error(["returnId"], "Return status is invalid.", "INVALID_STATE")])
    plan: list[tuple[ReturnLineItem, int]] = []
    for i, line in enumerate(returnLineItems or []):
        path = ["returnLineItems", str(i)]
        rli = next((x for x in ret.line_items if x.id == line.get("returnLineItemId")), None)
        qty = int(line.get("quantity") or 0)
        if qty <= 0:
            errors.append(user_error(None, "Quantity must be greater than 0", "GREATER_THAN"))
        elif rli is None:
            errors.append(
                user_error(path + ["returnLineItemId"], "Return line item was not found.", "NOT_FOUND")
            )
        elif qty > rli.quantity - rli.processed_quantity:
            errors.append(
                user_error(path + ["quantity"], "Return line item has an invalid quantity.", "INVALID")
            )
        else:
            plan.append((rli, qty))
    if errors:
        return _return_payload(None, errors)
    for rli, qty in plan:
        rli.quantity -= qty
        for rfo in ret.rfos:
            for rfo_line in rfo.line_items:
                if rfo_line.return_line_item is rli:
                    rfo_line.total_quantity -= qty
    ret.line_items = [x for x in ret.line_items if x.quantity > 0]
    for rfo in ret.rfos:
        rfo.line_items = [x for x in rfo.line_items if x.total_quantity > 0]
    if not ret.line_items:
        ret.status, ret.closed_at = "CLOSED", st.now_iso()
    return _changed(ctx, ret)


# --- Reverse logistics ---------------------------------------------------------------------------


def _delivery_payload(rd: ReverseDelivery | None, errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"reverseDelivery": rd, "userErrors": errors}


def _apply_shipping(
    rd: ReverseDelivery, tracking: dict[str, Any] | None, label: dict[str, Any] | None
) -> None:
    if tracking:
        if "number" in tracking:
            rd.tracking_number = tracking.get("number")
        if "url" in tracking:
            rd.tracking_url = tracking.get("url")
        if tracking.get("company") or tracking.get("carrierName"):
            rd.carrier_name = tracking.get("company") or tracking.get("carrierName")
    if label and label.get("fileUrl"):
        rd.label_url = label["fileUrl"]


def m_reverse_delivery_create(
    ctx: RequestContext,
    reverseFulfillmentOrderId: str,
    reverseDeliveryLineItems: list[dict[str, Any]],
    trackingInput: dict[str, Any] | None = None,
    labelInput: dict[str, Any] | None = None,
    **_args: Any,
) -> dict[str, Any]:
    rfo = _typed(ctx, reverseFulfillmentOrderId, "ReverseFulfillmentOrder")
    for line in reverseDeliveryLineItems:
        parsed = st.parse_gid(line.get("reverseFulfillmentOrderLineItemId"))
        if parsed is None or parsed[0] != "ReverseFulfillmentOrderLineItem":
            raise resource_not_found(line.get("reverseFulfillmentOrderLineItemId"))
    if rfo is None:
        return _delivery_payload(
            None,
            [
                user_error(
                    ["reverseFulfillmentOrderId"], "Reverse fulfillment order was not found.", "NOT_FOUND"
                )
            ],
        )
    errors: list[dict[str, Any]] = []
    plan: list[tuple[RfoLineItem, int]] = []
    if not reverseDeliveryLineItems:
        # An empty list means "everything on the reverse fulfilment order", as recorded.
        plan = [(x, x.total_quantity) for x in rfo.line_items]
    used: dict[int, int] = {}
    for i, line in enumerate(reverseDeliveryLineItems):
        path = ["reverseDeliveryLineItems", str(i)]
        rfo_line = next(
            (x for x in rfo.line_items if x.id == line.get("reverseFulfillmentOrderLineItemId")), None
        )
        if rfo_line is None:
            errors.append(user_error(path + ["reverseFulfillmentOrderLineItemId"], "must exist"))
            continue
        qty = int(line.get("quantity") or 0)
        used[id(rfo_line)] = used.get(id(rfo_line), 0) + qty
        if qty <= 0 or used[id(rfo_line)] > rfo_line.total_quantity:
            errors.append(user_error(path + ["quantity"], "cannot deliver more items than are returned"))
            continue
        plan.append((rfo_line, qty))
    if errors:
        return _delivery_payload(None, errors)
    rd = ReverseDelivery(num=ctx.store.next_id(), rfo=rfo)
    for rfo_line, qty in plan:
        rd.line_items.append(
            ctx.shop.register(
                ReverseDeliveryLineItem(
                    num=ctx.store.next_id(), delivery=rd, rfo_line_item=rfo_line, quantity=qty
                )
            )
        )
    _apply_shipping(rd, trackingInput, labelInput)
    rfo.deliveries.append(ctx.shop.register(rd))
    rfo.ret.order.updated_at = st.now_iso()
    ctx.mutated = True
    return _delivery_payload(rd, [])


def m_reverse_delivery_update(
    ctx: RequestContext,
    reverseDeliveryId: str,
    trackingInput: dict[str, Any] | None = None,
    labelInput: dict[str, Any] | None = None,
    **_args: Any,
) -> dict[str, Any]:
    rd = _typed(ctx, reverseDeliveryId, "ReverseDelivery")
    if rd is None:
        return _delivery_payload(
            None, [user_error(["reverseDeliveryId"], "Reverse delivery was not found.", "NOT_FOUND")]
        )
    _apply_shipping(rd, trackingInput, labelInput)
    ctx.mutated = True
    return _delivery_payload(rd, [])


# --- Orders: tags and orderUpdate ------------------------------------------------------------

TAGGABLE = ("Order", "Product", "Customer", "DraftOrder", "Article")


def _tag_target(ctx: RequestContext, value: str) -> tuple[Order | None, list[dict[str, Any]]]:
    parsed = st.parse_gid(value)
    if parsed is None or parsed[0] not in TAGGABLE:
        raise resource_not_found(value)
    order = ctx.shop.lookup(value, "Order") if parsed[0] == "Order" else None
    if order is None:
        # Only orders are modelled; other taggables are always "missing", as recorded for them.
        return None, [user_error(["id"], f"{parsed[0]} does not exist")]
    return order, []


def m_tags_add(ctx: RequestContext, id: str, tags: list[str]) -> dict[str, Any]:
    order, errors = _tag_target(ctx, id)
    if order is None:
        return {"node": None, "userErrors": errors}
    order.tags = st.merge_tags(order.tags, tags)
    order.updated_at = st.now_iso()
    ctx.mutated = True
    return {"node": order, "userErrors": []}


def m_tags_remove(ctx: RequestContext, id: str, tags: list[str]) -> dict[str, Any]:
    order, errors = _tag_target(ctx, id)
    if order is None:
        return {"node": None, "userErrors": errors}
    order.tags = st.remove_tags(order.tags, tags)
    order.updated_at = st.now_iso()
    ctx.mutated = True
    return {"node": order, "userErrors": []}


_PHONE = re.compile(r"^\+?[0-9][0-9 ()./-]{5,}$")


def m_order_update(ctx: RequestContext, input: dict[str, Any]) -> dict[str, Any]:
    order = _typed(ctx, input["id"], "Order")
    if order is None:
        return {"order": None, "userErrors": [user_error(["id"], "Order does not exist")]}
    fields = {k: v for k, v in input.items() if k != "id"}
    if not fields:
        return {
            "order": order,
            "userErrors": [user_error(None, "No valid update parameters have been provided")],
        }
    if "phone" in fields and fields["phone"] and not _PHONE.match(fields["phone"]):
        return {"order": order, "userErrors": [user_error(["phone"], "Phone is invalid")]}
    # orderUpdate overwrites: tags replace all tags, note replaces the whole note.
    if "note" in fields:
        order.note = fields["note"]
    if "tags" in fields:
        order.tags = st.normalize_tags(fields["tags"] or [])
    if "email" in fields:
        order.email = fields["email"]
    if "phone" in fields:
        order.phone = fields["phone"]
    order.updated_at = st.now_iso()
    ctx.mutated = True
    return {"order": order, "userErrors": []}


# --- Webhook subscriptions (per shop and app) -----------------------------------------------


def _no_app_error() -> dict[str, Any]:
    # Stand-in limitation: deliveries are signed with an app's secret, so legacy tokens (not
    # issued to an app) cannot subscribe. Not Shopify wording.
    return user_error(
        None, "Webhook subscriptions need an access token issued to an app (stand-in: POST /_standin/apps)"
    )


def m_webhook_create(ctx: RequestContext, topic: str, webhookSubscription: dict[str, Any]) -> dict[str, Any]:
    if ctx.client_id is None:
        return {"webhookSubscription": None, "userErrors": [_no_app_error()]}
    spec = webhookSubscription
    uri = spec.get("uri") or spec.get("callbackUrl")
    field = ["webhookSubscription", "uri" if "uri" in spec else "callbackUrl"]
    if not uri:
        return {"webhookSubscription": None, "userErrors": [user_error(field, "Address can't be blank")]}
    if not str(uri).startswith(("https://", "http://")):
        # Pub/Sub and EventBridge addresses are not modelled (not recorded).
        return {"webhookSubscription": None, "userErrors": [user_error(field, "Address is invalid")]}
    fmt = spec.get("format") or "JSON"
    if fmt != "JSON":
        return {
            "webhookSubscription": None,
            "userErrors": [user_error(["webhookSubscription", "format"], "The stand-in delivers JSON only")],
        }
    webhooks = ctx.store.webhooks
    if any(s.uri == uri for s in webhooks.find(ctx.client_id, ctx.shop.domain, topic)):
        return {
            "webhookSubscription": None,
            "userErrors": [user_error(field, "Address for this topic has already been taken")],
        }
    sub = webhooks.subscribe(
        ctx.client_id,
        ctx.shop.domain,
        topic,
        str(uri),
        fmt,
        ctx.api_version,
        name=spec.get("name"),
        filter=spec.get("filter"),
        include_fields=list(spec.get("includeFields") or []),
    )
    ctx.mutated = True
    return {"webhookSubscription": sub.graphql(), "userErrors": []}


def m_webhook_delete(ctx: RequestContext, id: str) -> dict[str, Any]:
    sub = ctx.store.webhooks.get(id) if ctx.client_id else None
    if sub is None or sub.client_id != ctx.client_id or sub.shop != ctx.shop.domain:
        return {
            "deletedWebhookSubscriptionId": None,
            "userErrors": [user_error(["id"], "Webhook subscription does not exist")],
        }
    ctx.store.webhooks.delete(sub)
    ctx.mutated = True
    return {"deletedWebhookSubscriptionId": sub.id, "userErrors": []}


def q_webhook_subscriptions(
    ctx: RequestContext,
    topics: list[str] | None = None,
    uri: str | None = None,
    callbackUrl: str | None = None,
    format: str | None = None,
    **args: Any,
) -> dict[str, Any]:
    subs = ctx.store.webhooks.find(ctx.client_id, ctx.shop.domain) if ctx.client_id else []
    wanted_uri = uri or callbackUrl
    subs = [
        s
        for s in sorted(subs, key=lambda s: s.num)
        if (not topics or s.topic in topics)
        and (wanted_uri is None or s.uri == wanted_uri)
        and (format is None or s.format == format)
    ]
    args.pop("sortKey", None)
    args.pop("query", None)
    return connection([s.graphql() for s in subs], **args)


def q_webhook_subscription(ctx: RequestContext, id: str) -> dict[str, Any] | None:
    sub = ctx.store.webhooks.get(id) if ctx.client_id else None
    if sub is None or sub.client_id != ctx.client_id or sub.shop != ctx.shop.domain:
        return None
    return sub.graphql()


# --- Wiring ----------------------------------------------------------------------------------

QUERY_FIELDS: dict[str, Callable[..., Any]] = {
    "order": q_order,
    "orders": q_orders,
    "node": q_node,
    "nodes": q_nodes,
    "return": q_return,
    "returnableFulfillments": q_returnable_fulfillments,
    "returnReasonDefinitions": q_reason_definitions,
    "currentAppInstallation": q_app_installation,
    "reverseDelivery": q_reverse_delivery,
    "reverseFulfillmentOrder": q_rfo,
    "webhookSubscriptions": q_webhook_subscriptions,
    "webhookSubscription": q_webhook_subscription,
}

MUTATION_FIELDS: dict[str, Callable[..., Any]] = {
    "returnRequest": m_return_request,
    "returnCreate": m_return_create,
    "returnApproveRequest": m_return_approve,
    "returnDeclineRequest": m_return_decline,
    "returnClose": m_return_close,
    "returnReopen": m_return_reopen,
    "returnCancel": m_return_cancel,
    "returnProcess": m_return_process,
    "removeFromReturn": m_remove_from_return,
    "reverseDeliveryCreateWithShipping": m_reverse_delivery_create,
    "reverseDeliveryShippingUpdate": m_reverse_delivery_update,
    "tagsAdd": m_tags_add,
    "tagsRemove": m_tags_remove,
    "orderUpdate": m_order_update,
    "webhookSubscriptionCreate": m_webhook_create,
    "webhookSubscriptionDelete": m_webhook_delete,
}


def _deliverable(rd: ReverseDelivery) -> dict[str, Any] | None:
    tracking = None
    if rd.tracking_number or rd.tracking_url or rd.carrier_name:
        tracking = {"number": rd.tracking_number, "url": rd.tracking_url, "carrierName": rd.carrier_name}
    label = {"publicFileUrl": rd.label_url, "createdAt": st.now_iso()} if rd.label_url else None
    return {"__typename": "ReverseDeliveryShippingDeliverable", "tracking": tracking, "label": label}


def _list_first(getter: Callable[[Any], list[Any]]) -> Callable[..., list[Any]]:
    def resolve(obj: Any, _info: GraphQLResolveInfo, first: int | None = None, **_a: Any) -> list[Any]:
        items = getter(obj)
        return items[:first] if first is not None else items

    return resolve


def _order_returns(
    order: Order, _info: GraphQLResolveInfo, query: str | None = None, **args: Any
) -> dict[str, Any]:
    items = order.returns
    for key, quoted, bare in _QUERY_TERM.findall(query or ""):
        if key == "status":
            wanted = {v.upper() for v in (quoted or bare).split(",")}
            items = [r for r in items if r.status in wanted]
    return connection(items, **args)


def _rli_processing(rli: ReturnLineItem) -> int:
    return rli.quantity - rli.processed_quantity


TYPE_FIELDS: dict[str, dict[str, Callable[..., Any]]] = {
    "Order": {
        "returnStatus": attr(Order.return_status),
        "displayFulfillmentStatus": attr(Order.display_fulfillment_status),
        "lineItems": conn_of(lambda o: o.line_items),
        "fulfillments": _list_first(lambda o: o.fulfillments),
        "returns": _order_returns,
        "createdAt": attr(lambda o: o.created_at),
        "updatedAt": attr(lambda o: o.updated_at),
        "processedAt": attr(lambda o: o.created_at),
        "legacyResourceId": attr(lambda o: str(o.num)),
        "phone": attr(lambda o: getattr(o, "phone", None)),
        "fulfillmentOrders": conn_of(lambda o: []),
    },
    "LineItem": {
        "currentQuantity": attr(lambda li: li.quantity),
        "unfulfilledQuantity": attr(lambda li: li.quantity - li.order.fulfilled_quantity(li)),
        "fulfillableQuantity": attr(lambda li: li.quantity - li.order.fulfilled_quantity(li)),
        "name": attr(lambda li: li.title),
    },
    "Fulfillment": {
        "fulfillmentLineItems": conn_of(lambda f: f.line_items),
        "createdAt": attr(lambda f: f.created_at),
        "updatedAt": attr(lambda f: f.created_at),
        "displayStatus": attr(lambda f: "FULFILLED"),
        "name": attr(lambda f: f"{f.order.name}-F{f.order.fulfillments.index(f) + 1}"),
        "legacyResourceId": attr(lambda f: str(f.num)),
    },
    "FulfillmentLineItem": {"lineItem": attr(lambda x: x.line_item)},
    "ReturnableFulfillment": {
        "returnableFulfillmentLineItems": conn_of(lambda r: r["returnableFulfillmentLineItems"]),
    },
    "Return": {
        "returnLineItems": conn_of(lambda r: r.line_items),
        "reverseFulfillmentOrders": conn_of(lambda r: r.rfos),
        "totalQuantity": attr(lambda r: r.total_quantity),
        "closedAt": attr(lambda r: r.closed_at),
        "createdAt": attr(lambda r: r.created_at),
        "requestApprovedAt": attr(lambda r: r.request_approved_at),
        "refunds": conn_of(lambda r: []),
        "exchangeLineItems": conn_of(lambda r: []),
    },
    "ReturnLineItem": {
        "fulfillmentLineItem": attr(lambda x: x.fulfillment_line_item),
        "returnReason": attr(lambda x: x.return_reason),
        "returnReasonDefinition": attr(lambda x: x.reason_definition),
        "returnReasonNote": attr(lambda x: x.return_reason_note),
        "customerNote": attr(lambda x: x.customer_note),
        "processedQuantity": attr(lambda x: x.processed_quantity),
        "unprocessedQuantity": attr(_rli_processing),
        # Only an OPEN return's lines can be processed (recorded: REQUESTED gives 0).
        "processableQuantity": attr(lambda x: _rli_processing(x) if x.ret.status == "OPEN" else 0),
        "refundableQuantity": attr(lambda x: x.quantity),  # recorded: = quantity until refunds
        "refundedQuantity": attr(lambda x: 0),
    },
    "ReverseFulfillmentOrder": {
        "lineItems": conn_of(lambda r: r.line_items),
        "reverseDeliveries": conn_of(lambda r: r.deliveries),
        "order": attr(lambda r: r.ret.order),
    },
    "ReverseFulfillmentOrderLineItem": {
        "totalQuantity": attr(lambda x: x.total_quantity),
        "fulfillmentLineItem": attr(lambda x: x.return_line_item.fulfillment_line_item),
    },
    "ReverseDelivery": {
        "reverseDeliveryLineItems": conn_of(lambda d: d.line_items),
        "reverseFulfillmentOrder": attr(lambda d: d.rfo),
        "deliverable": attr(_deliverable),
    },
    "ReverseDeliveryLineItem": {
        "reverseFulfillmentOrderLineItem": attr(lambda x: x.rfo_line_item),
    },
}


def install_resolvers(schema: GraphQLSchema) -> None:
    """Attach resolvers to a freshly built schema (fields missing in a version are skipped)."""
    for root, table in ((schema.query_type, QUERY_FIELDS), (schema.mutation_type, MUTATION_FIELDS)):
        if root is None:
            continue
        for name, fn in table.items():
            if name in root.fields:
                root.fields[name].resolve = scoped(fn)
    for type_name, table in TYPE_FIELDS.items():
        gql_type = schema.type_map.get(type_name)
        if not isinstance(gql_type, GraphQLObjectType):
            continue
        for name, fn in table.items():
            if name in gql_type.fields:
                gql_type.fields[name].resolve = fn
