"""In-memory store of the stand-in: shops, orders, fulfilments, returns and reverse logistics.

Plain Python objects, no GraphQL here. Each shop has its own lock: a request holds it while it
executes, so one shop's state is always consistent and shops never wait for each other.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from standin.apps import AppRegistry
from standin.faults import FaultConfig
from standin.throttle import COST_MODELS, MAX_QUERY_COST, LeakyBucket
from standin.webhooks import Webhooks

DEFAULT_SCOPES: tuple[str, ...] = ("read_orders", "write_orders", "read_returns", "write_returns")
CALL_LOG_LIMIT = 20_000


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gid(kind: str, numeric: int) -> str:
    return f"gid://shopify/{kind}/{numeric}"


def parse_gid(value: Any) -> tuple[str, int] | None:
    """Split 'gid://shopify/Kind/123' into ('Kind', 123); None when it is not such a gid."""
    if not isinstance(value, str) or not value.startswith("gid://shopify/"):
        return None
    rest = value[len("gid://shopify/") :].split("?", 1)[0]
    kind, _, num = rest.partition("/")
    if not kind or not num.isdigit():
        return None
    return kind, int(num)


def normalize_tags(values: list[str] | str | None) -> list[str]:
    """Shopify's tag rules: split on commas, trim, drop blanks, de-dup case-insensitively
    (first spelling wins), sort case-insensitively."""
    # Exact duplicates are handled by the dict; case variants keep the existing spelling.
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    seen: dict[str, str] = {}
    for value in values:
        for part in str(value).split(","):
            tag = part.strip()
            if tag and tag.lower() not in seen:
                seen[tag.lower()] = tag
    return sorted(seen.values(), key=lambda t: (t.lower(), t))


def merge_tags(existing: list[str], added: list[str]) -> list[str]:
    return normalize_tags(list(existing) + list(added))


def remove_tags(existing: list[str], removed: list[str] | str) -> list[str]:
    """tagsRemove matches case-sensitively: removing "red" leaves "Red" (recorded in
    2025-01--tags-add-multi-resource.json, caseVariantRemove)."""
    gone = set(normalize_tags(removed))
    return normalize_tags([t for t in existing if t not in gone])


# --- Domain objects. `typename` is the GraphQL type; resolvers.py maps fields onto them. ---


@dataclass(eq=False)
class LineItem:
    typename = "LineItem"
    num: int
    title: str
    quantity: int
    order: Order
    sku: str | None = None

    @property
    def id(self) -> str:
        return gid("LineItem", self.num)


@dataclass(eq=False)
class FulfillmentLineItem:
    typename = "FulfillmentLineItem"
    num: int
    line_item: LineItem
    quantity: int
    fulfillment: Fulfillment

    @property
    def id(self) -> str:
        return gid("FulfillmentLineItem", self.num)


@dataclass(eq=False)
class Fulfillment:
    typename = "Fulfillment"
    num: int
    order: Order
    line_items: list[FulfillmentLineItem] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)
    status: str = "SUCCESS"

    @property
    def id(self) -> str:
        return gid("Fulfillment", self.num)


@dataclass(eq=False)
class Order:
    typename = "Order"
    num: int
    name: str
    line_items: list[LineItem] = field(default_factory=list)
    fulfillments: list[Fulfillment] = field(default_factory=list)
    returns: list[Return] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    note: str | None = None
    email: str | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)

    @property
    def id(self) -> str:
        return gid("Order", self.num)

    def fulfilled_quantity(self, line_item: LineItem) -> int:
        return sum(
            f.quantity for ful in self.fulfillments for f in ful.line_items if f.line_item is line_item
        )

    def return_status(self) -> str:
        """Order.returnStatus as the lifecycle capture shows it: any REQUESTED return wins, then
        any OPEN one; otherwise CLOSED ones make it RETURNED; declined/canceled count as none."""
        statuses = {r.status for r in self.returns}
        if "REQUESTED" in statuses:
            return "RETURN_REQUESTED"
        if "OPEN" in statuses:
            return "IN_PROGRESS"
        if "CLOSED" in statuses:
            return "RETURNED"
        return "NO_RETURN"

    def display_fulfillment_status(self) -> str:
        total = sum(li.quantity for li in self.line_items)
        done = sum(self.fulfilled_quantity(li) for li in self.line_items)
        if done == 0:
            return "UNFULFILLED"
        return "FULFILLED" if done >= total else "PARTIALLY_FULFILLED"


@dataclass(frozen=True)
class ReasonDefinition:
    typename = "ReturnReasonDefinition"
    num: int
    name: str
    handle: str
    legacy: str  # the ReturnReason enum value the definition corresponds to
    deleted: bool = False

    @property
    def id(self) -> str:
        return gid("ReturnReasonDefinition", self.num)


# The first definitions of the recorded shop (return-reason-validation capture), with the legacy
# enum each maps to. Enough for the sync's reason mapping; more can be added without code changes.
REASON_DEFINITIONS: tuple[ReasonDefinition, ...] = (
    ReasonDefinition(1, "Unknown", "unknown", "UNKNOWN"),
    ReasonDefinition(2, "Changed my mind", "changed-my-mind", "UNWANTED"),
    ReasonDefinition(3, "Item not as described", "item-not-as-described", "NOT_AS_DESCRIBED"),
    ReasonDefinition(4, "Received the wrong item", "received-the-wrong-item", "WRONG_ITEM"),
    ReasonDefinition(5, "Other", "other-reason", "OTHER"),
    ReasonDefinition(6, "Damaged or defective", "damaged-or-defective", "DEFECTIVE"),
    ReasonDefinition(7, "Too small", "too-small", "SIZE_TOO_SMALL"),
    ReasonDefinition(8, "Too big", "too-big", "SIZE_TOO_LARGE"),
    ReasonDefinition(9, "Style", "style", "STYLE"),
    ReasonDefinition(10, "Color", "color", "COLOR"),
    # Attribute-specific definitions have no legacy enum counterpart: they read back as OTHER.
    ReasonDefinition(11, "Absorbency", "absorbency", "OTHER"),
    ReasonDefinition(12, "Academic level", "academic-level", "OTHER"),
    ReasonDefinition(13, "Accuracy", "accuracy", "OTHER"),
    ReasonDefinition(14, "Adhesion", "adhesion", "OTHER"),
    ReasonDefinition(15, "Adhesive", "adhesive", "OTHER"),
    ReasonDefinition(16, "Adhesive strength", "adhesive-strength", "OTHER"),
    ReasonDefinition(17, "Adjustability", "adjustability", "OTHER"),
    ReasonDefinition(18, "Age range", "age-range", "OTHER"),
    ReasonDefinition(19, "Amperage", "amperage", "OTHER"),
    ReasonDefinition(20, "Angle", "angle", "OTHER"),
)
REASON_BY_LEGACY = {d.legacy: d for d in REASON_DEFINITIONS[:10]}


@dataclass(eq=False)
class ReturnLineItem:
    typename = "ReturnLineItem"
    num: int
    ret: Return
    fulfillment_line_item: FulfillmentLineItem
    quantity: int
    return_reason: str
    reason_definition: ReasonDefinition | None
    return_reason_note: str = ""
    customer_note: str | None = None
    processed_quantity: int = 0

    @property
    def id(self) -> str:
        return gid("ReturnLineItem", self.num)


@dataclass(eq=False)
class RfoLineItem:
    typename = "ReverseFulfillmentOrderLineItem"
    num: int
    rfo: ReverseFulfillmentOrder
    return_line_item: ReturnLineItem
    total_quantity: int
    dispositions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return gid("ReverseFulfillmentOrderLineItem", self.num)


@dataclass(eq=False)
class ReverseDeliveryLineItem:
    typename = "ReverseDeliveryLineItem"
    num: int
    delivery: ReverseDelivery
    rfo_line_item: RfoLineItem
    quantity: int

    @property
    def id(self) -> str:
        return gid("ReverseDeliveryLineItem", self.num)


@dataclass(eq=False)
class ReverseDelivery:
    typename = "ReverseDelivery"
    num: int
    rfo: ReverseFulfillmentOrder
    line_items: list[ReverseDeliveryLineItem] = field(default_factory=list)
    tracking_number: str | None = None
    tracking_url: str | None = None
    carrier_name: str | None = None
    label_url: str | None = None

    @property
    def id(self) -> str:
        return gid("ReverseDelivery", self.num)


@dataclass(eq=False)
class ReverseFulfillmentOrder:
    typename = "ReverseFulfillmentOrder"
    num: int
    ret: Return
    line_items: list[RfoLineItem] = field(default_factory=list)
    deliveries: list[ReverseDelivery] = field(default_factory=list)
    status: str = "OPEN"

    @property
    def id(self) -> str:
        return gid("ReverseFulfillmentOrder", self.num)


@dataclass(eq=False)
class Return:
    typename = "Return"
    num: int
    order: Order
    name: str
    status: str
    line_items: list[ReturnLineItem] = field(default_factory=list)
    rfos: list[ReverseFulfillmentOrder] = field(default_factory=list)
    closed_at: str | None = None
    decline: dict[str, Any] | None = None
    created_at: str = field(default_factory=now_iso)
    request_approved_at: str | None = None

    @property
    def id(self) -> str:
        return gid("Return", self.num)

    @property
    def total_quantity(self) -> int:
        return sum(li.quantity for li in self.line_items)


# Returns in these states hold their quantities: an item cannot be returned twice.
ACTIVE_RETURN_STATUSES = frozenset({"REQUESTED", "OPEN", "CLOSED"})


@dataclass
class Shop:
    """One store: its auth, rate limit, faults, objects and call log. `tokens` holds the legacy
    tokens (not tied to an app, never expiring); app-issued tokens live in Store.apps."""

    domain: str
    tokens: dict[str, list[str]]
    bucket: LeakyBucket
    throttle_mode: str = "graphql"
    num: int = 0  # the shop's numeric id (webhook payloads: shop_id, id)
    name: str = ""
    email: str | None = None
    max_query_cost: int = MAX_QUERY_COST
    cost_model: str = "standin"
    faults: FaultConfig = field(default_factory=FaultConfig)
    orders: dict[int, Order] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)  # gid -> object, for node lookups
    calls: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=CALL_LOG_LIMIT))
    lock: threading.RLock = field(default_factory=threading.RLock)

    def register(self, obj: Any) -> Any:
        self.objects[obj.id] = obj
        return obj

    def lookup(self, gid_value: Any, typename: str) -> Any:
        obj = self.objects.get(gid_value) if isinstance(gid_value, str) else None
        return obj if obj is not None and obj.typename == typename else None

    def returned_quantity(self, fli: FulfillmentLineItem) -> int:
        return sum(
            rli.quantity
            for r in fli.fulfillment.order.returns
            if r.status in ACTIVE_RETURN_STATUSES
            for rli in r.line_items
            if rli.fulfillment_line_item is fli
        )

    def returnable_quantity(self, fli: FulfillmentLineItem) -> int:
        return max(0, fli.quantity - self.returned_quantity(fli))

    def find_orders_by_name(self, name: str) -> list[Order]:
        wanted = name.strip().lstrip("#").lower()
        return [o for o in self.orders.values() if o.name.lstrip("#").lower() == wanted]


class Store:
    """All shops, plus the id allocator shared by every generated object."""

    def __init__(self) -> None:
        self.shops: dict[str, Shop] = {}
        self.lock = threading.Lock()
        self.apps = AppRegistry()
        self.webhooks = Webhooks()
        # Start generated ids far above typical seeded ids so they never collide with ids a test
        # chose, and make each allocation unique across kinds (like Shopify's big numbers).
        self._ids = itertools.count(int(time.time()) * 1000 % 10**11 + 10**11)

    def next_id(self) -> int:
        return next(self._ids)

    def reset(self) -> None:
        with self.lock:
            self.shops.clear()
        self.apps.reset()
        self.webhooks.reset()

    def shop(self, domain: str) -> Shop | None:
        return self.shops.get(domain.lower())

    def shop_by_token(self, token: str) -> Shop | None:
        for shop in self.shops.values():
            if token in shop.tokens:
                return shop
        return None

    def create_shop(
        self,
        domain: str,
        token: str,
        scopes: list[str] | None = None,
        bucket_size: int = 2000,
        restore_rate: int = 100,
        throttle_mode: str = "graphql",
        max_query_cost: int = MAX_QUERY_COST,
        cost_model: str = "standin",
        shop_id: int | None = None,
        name: str | None = None,
        email: str | None = None,
    ) -> Shop:
        if throttle_mode not in ("graphql", "http429"):
            raise ValueError("throttle_mode must be 'graphql' or 'http429'")
        if cost_model not in COST_MODELS:
            raise ValueError(f"cost_model must be one of {', '.join(COST_MODELS)}")
        domain = domain.lower()
        shop = Shop(
            domain=domain,
            tokens={token: list(DEFAULT_SCOPES if scopes is None else scopes)} if token else {},
            bucket=LeakyBucket(bucket_size, restore_rate),
            throttle_mode=throttle_mode,
            num=shop_id or self.next_id(),
            name=name or domain.split(".", 1)[0],
            email=email or f"owner@{domain.split('.', 1)[0]}.example",
            max_query_cost=int(max_query_cost),
            cost_model=cost_model,
        )
        with self.lock:
            self.shops[shop.domain] = shop
        return shop

    # --- Seeding: dev-store style order creation and fulfilment. ---

    def create_order(
        self,
        shop: Shop,
        name: str,
        line_items: list[dict[str, Any]],
        order_id: int | None = None,
        fulfilled: bool = True,
        tags: list[str] | None = None,
        note: str | None = None,
        email: str | None = None,
    ) -> Order:
        with shop.lock:
            num = order_id or self.next_id()
            if num in shop.orders:
                raise ValueError(f"order {num} exists")
            if not name.startswith("#"):
                name = "#" + name
            order = Order(num=num, name=name, tags=normalize_tags(tags), note=note, email=email)
            for spec in line_items:
                li_num = _numeric(spec.get("id")) or self.next_id()
                li = LineItem(
                    num=li_num,
                    title=str(spec.get("title") or f"Item {li_num}"),
                    quantity=int(spec.get("quantity", 1)),
                    order=order,
                    sku=spec.get("sku"),
                )
                order.line_items.append(shop.register(li))
            shop.orders[num] = shop.register(order)
            if fulfilled:
                self.fulfill(shop, order, None)
            return order

    def fulfill(
        self, shop: Shop, order: Order, lines: list[dict[str, Any]] | None, fulfillment_id: int | None = None
    ) -> Fulfillment:
        """Fulfil some or all unfulfilled quantity. `lines`: [{"id": line item gid/number,
        "quantity": n, optional "fulfillment_line_item_id"}]; None means everything left."""
        with shop.lock:
            wanted: list[tuple[LineItem, int, int | None]] = []
            if lines is None:
                for li in order.line_items:
                    left = li.quantity - order.fulfilled_quantity(li)
                    if left > 0:
                        wanted.append((li, left, None))
            else:
                for spec in lines:
                    li_num = _numeric(spec.get("id"))
                    li = next((x for x in order.line_items if x.num == li_num), None)
                    if li is None:
                        raise ValueError(f"line item {spec.get('id')} is not on {order.name}")
                    qty = int(spec.get("quantity") or li.quantity - order.fulfilled_quantity(li))
                    if qty <= 0 or qty > li.quantity - order.fulfilled_quantity(li):
                        raise ValueError(f"cannot fulfil {qty} of line item {li.id}")
                    wanted.append((li, qty, _numeric(spec.get("fulfillment_line_item_id"))))
            if not wanted:
                raise ValueError(f"nothing left to fulfil on {order.name}")
            ful = Fulfillment(num=fulfillment_id or self.next_id(), order=order)
            for li, qty, fli_num in wanted:
                fli = FulfillmentLineItem(
                    num=fli_num or self.next_id(), line_item=li, quantity=qty, fulfillment=ful
                )
                ful.line_items.append(shop.register(fli))
            order.fulfillments.append(shop.register(ful))
            order.updated_at = now_iso()
            return ful


def _numeric(value: Any) -> int | None:
    """Accept 123, '123' or 'gid://shopify/X/123'."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    parsed = parse_gid(value)
    if parsed:
        return parsed[1]
    text = str(value)
    return int(text) if text.isdigit() else None


# --- Inspection: plain JSON views of a shop. ---


def order_view(shop: Shop, order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "name": order.name,
        "tags": list(order.tags),
        "note": order.note,
        "returnStatus": order.return_status(),
        "displayFulfillmentStatus": order.display_fulfillment_status(),
        "lineItems": [
            {
                "id": li.id,
                "title": li.title,
                "quantity": li.quantity,
                "fulfilledQuantity": order.fulfilled_quantity(li),
            }
            for li in order.line_items
        ],
        "fulfillments": [
            {
                "id": f.id,
                "createdAt": f.created_at,
                "lineItems": [
                    {
                        "id": x.id,
                        "lineItemId": x.line_item.id,
                        "quantity": x.quantity,
                        "returnableQuantity": shop.returnable_quantity(x),
                    }
                    for x in f.line_items
                ],
            }
            for f in order.fulfillments
        ],
        "returns": [r.id for r in order.returns],
    }


def return_view(ret: Return) -> dict[str, Any]:
    return {
        "id": ret.id,
        "name": ret.name,
        "status": ret.status,
        "orderId": ret.order.id,
        "closedAt": ret.closed_at,
        "decline": ret.decline,
        "createdAt": ret.created_at,
        "lines": [
            {
                "id": li.id,
                "fulfillmentLineItemId": li.fulfillment_line_item.id,
                "lineItemId": li.fulfillment_line_item.line_item.id,
                "quantity": li.quantity,
                "processedQuantity": li.processed_quantity,
                "returnReason": li.return_reason,
                "returnReasonDefinition": (li.reason_definition.handle if li.reason_definition else None),
                "returnReasonNote": li.return_reason_note,
                "customerNote": li.customer_note,
            }
            for li in ret.line_items
        ],
        "reverseFulfillmentOrders": [
            {
                "id": rfo.id,
                "status": rfo.status,
                "lines": [
                    {"id": x.id, "returnLineItemId": x.return_line_item.id, "totalQuantity": x.total_quantity}
                    for x in rfo.line_items
                ],
                "reverseDeliveries": [
                    {
                        "id": d.id,
                        "trackingNumber": d.tracking_number,
                        "trackingUrl": d.tracking_url,
                        "carrierName": d.carrier_name,
                        "labelUrl": d.label_url,
                        "lines": [
                            {"rfoLineItemId": x.rfo_line_item.id, "quantity": x.quantity}
                            for x in d.line_items
                        ],
                    }
                    for d in rfo.deliveries
                ],
            }
            for rfo in ret.rfos
        ],
    }


def shop_view(shop: Shop) -> dict[str, Any]:
    with shop.lock:
        return {
            "domain": shop.domain,
            "id": shop.num,
            "scopes": {t: list(s) for t, s in shop.tokens.items()},
            "throttle": {
                "bucket_size": shop.bucket.size,
                "restore_rate": shop.bucket.rate,
                "currently_available": shop.bucket.available(),
                "throttle_mode": shop.throttle_mode,
                "max_query_cost": shop.max_query_cost,
                "cost_model": shop.cost_model,
            },
            "faults": shop.faults.as_dict(),
            "orders": [order_view(shop, o) for o in shop.orders.values()],
            "returns": [return_view(r) for o in shop.orders.values() for r in o.returns],
        }
