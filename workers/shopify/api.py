"""Typed Shopify operations for the sync, over ``ShopifyClient``.

Reads return dataclasses; mutations return the resulting ``ShopifyReturn`` (or nothing) and raise
``UserErrors`` with a ``kind`` the sync acts on (see ``classify_user_errors``). Transport-level
errors (``OutcomeUnknown``, ``Throttled``, ``AccessDenied``...) come from the client unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from workers import mapping
from workers.shopify import documents as docs
from workers.shopify.client import NotFound, ShopifyClient, ShopifyError, ShopifyGraphQLError, operation_of

UserErrorKind = Literal["waiting", "rejected", "conflict", "invalid"]

# --- userErrors classification ---------------------------------------------------------------
# Messages as Shopify sends them (shared/shopify/captures, API 2026-04).

# The same fulfilled item returned again (returnRequest and returnCreate, field ...quantity).
ALREADY_RETURNED_MESSAGE = "Return line item has an invalid quantity."
ALREADY_DECLINED_MESSAGE = "The return is already declined."
# State preconditions of the return mutations (code INVALID_STATE in every capture).
STATE_MESSAGES = frozenset(
    {
        "Return is not approvable. Only returns with status REQUESTED can be approved.",
        "Return is not declinable. Only non-refunded returns with status REQUESTED can be declined.",
        ALREADY_DECLINED_MESSAGE,
        "Return is not cancelable.",
        "Return status is invalid.",
        # reverseDeliveryCreateWithShipping when the reverse fulfilment order is already covered by a
        # delivery (e.g. a replay after an unknown outcome): the return's state, not our input.
        "cannot deliver more items than are returned",
    }
)
# No capture shows Shopify's answer for an order that is not fulfilled yet (the sync normally sees
# it first in returnableFulfillments and waits without calling); these fragments cover the
# wordings Shopify uses for it, so such an answer waits rather than fails.
_WAITING_FRAGMENTS = (
    "not fulfilled",
    "unfulfilled",
    "not been fulfilled",
    "no returnable",
    "not returnable",
    "nothing to return",
    "no fulfilled",
)

# When one answer mixes kinds, the most final one wins: a request with an invalid part is invalid
# as a whole; an already-returned item stays rejected even if another item is merely waiting.
_PRECEDENCE: tuple[UserErrorKind, ...] = ("invalid", "rejected", "conflict", "waiting")


def _classify_one(error: dict[str, Any]) -> UserErrorKind:
    message = str(error.get("message") or "").strip()
    lowered = message.lower()
    if message == ALREADY_RETURNED_MESSAGE:
        return "rejected"
    if message in STATE_MESSAGES or error.get("code") == "INVALID_STATE":
        return "conflict"
    if any(fragment in lowered for fragment in _WAITING_FRAGMENTS):
        return "waiting"
    return "invalid"


def classify_user_errors(errors: Sequence[dict[str, Any]]) -> UserErrorKind:
    """What the sync should do about a mutation's userErrors.

    - ``waiting``: the order has nothing returnable yet (not fulfilled) — retry later;
    - ``rejected``: the item was already returned (Shopify: "Return line item has an invalid
      quantity.") — final, shown to operators, never retried;
    - ``conflict``: the Shopify return is not in a state that allows the transition — re-read and
      reconcile;
    - ``invalid``: anything else (unknown ids, bad reasons...) — final, a bug or bad data.
    """
    kinds = {_classify_one(error) for error in errors}
    if not kinds:
        return "invalid"
    for kind in _PRECEDENCE:
        if kind in kinds:
            return kind
    return "invalid"


class UserErrors(ShopifyError):
    """A mutation answered with userErrors; ``kind`` says what to do about it."""

    def __init__(self, errors: list[dict[str, Any]], kind: UserErrorKind, operation: str = "") -> None:
        messages = "; ".join(str(error.get("message")) for error in errors)
        super().__init__(f"{operation}: {messages}" if operation else messages)
        self.errors = errors
        self.kind = kind
        self.operation = operation

    @property
    def messages(self) -> list[str]:
        return [str(error.get("message")) for error in self.errors]


# --- data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShopifyReturn:
    gid: str
    name: str
    status: str  # REQUESTED, OPEN, CLOSED, DECLINED, CANCELED
    lines: list[tuple[str, int]]  # (line item GID, quantity), one per return line
    reverse_fulfillment_order_gids: list[str] = field(default_factory=list)
    tracking_numbers: list[str] = field(default_factory=list)

    def quantities_by_line_item(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for line_item_gid, quantity in self.lines:
            totals[line_item_gid] = totals.get(line_item_gid, 0) + quantity
        return totals


@dataclass(frozen=True)
class OrderSnapshot:
    gid: str
    name: str
    tags: list[str]
    note: str | None
    line_items: dict[str, tuple[int, int]]  # line item GID -> (quantity, unfulfilled quantity)
    returns: list[ShopifyReturn]


@dataclass(frozen=True)
class ReturnableLine:
    fulfillment_line_item_gid: str
    line_item_gid: str
    quantity: int  # still returnable


@dataclass(frozen=True)
class ReturnLineInput:
    fulfillment_line_item_gid: str
    quantity: int
    reason_definition_gid: str | None
    reason_note: str
    customer_note: str | None = None


@dataclass(frozen=True)
class ReturnItem:
    """One item of a platform return event, with its reason already mapped for the shop."""

    line_item_gid: str
    quantity: int
    reason_definition_gid: str | None
    reason_note: str
    customer_note: str | None = None


@dataclass(frozen=True)
class ShortfallItem:
    line_item_gid: str
    requested: int
    returnable: int


@dataclass(frozen=True)
class Shortfall:
    """Items whose line item has less returnable quantity on Shopify than the event asks for."""

    items: list[ShortfallItem]


def plan_return_lines(
    items: Sequence[ReturnItem], returnable_lines: Sequence[ReturnableLine]
) -> list[ReturnLineInput] | Shortfall:
    """Turn event items (line items) into Shopify return lines (fulfillment line items).

    A line item fulfilled in several fulfillments is taken from its fulfillment line items in
    turn, in Shopify's order, up to the event's quantity. Returnable quantity used by one item is
    not offered to the next (an event may list the same line item twice with different reasons).
    If any item cannot be covered in full, nothing is planned: the return must match the event.
    """
    remaining: dict[str, int] = {}
    by_line_item: dict[str, list[ReturnableLine]] = {}
    for line in returnable_lines:
        remaining[line.fulfillment_line_item_gid] = remaining.get(line.fulfillment_line_item_gid, 0) + max(
            0, line.quantity
        )
        by_line_item.setdefault(line.line_item_gid, []).append(line)

    planned: list[ReturnLineInput] = []
    short: list[ShortfallItem] = []
    for item in items:
        needed = item.quantity
        for line in by_line_item.get(item.line_item_gid, []):
            if needed <= 0:
                break
            take = min(needed, remaining[line.fulfillment_line_item_gid])
            if take <= 0:
                continue
            remaining[line.fulfillment_line_item_gid] -= take
            needed -= take
            planned.append(
                ReturnLineInput(
                    fulfillment_line_item_gid=line.fulfillment_line_item_gid,
                    quantity=take,
                    reason_definition_gid=item.reason_definition_gid,
                    reason_note=item.reason_note,
                    customer_note=item.customer_note,
                )
            )
        if needed > 0:
            short.append(ShortfallItem(item.line_item_gid, item.quantity, item.quantity - needed))
    if short:
        return Shortfall(short)
    return _merge_same_lines(planned)


def _merge_same_lines(lines: list[ReturnLineInput]) -> list[ReturnLineInput]:
    # Two event items for the same line item and reason become one Shopify line, not two lines on
    # the same fulfillment line item.
    merged: dict[tuple[str, str | None, str, str | None], ReturnLineInput] = {}
    for line in lines:
        key = (
            line.fulfillment_line_item_gid,
            line.reason_definition_gid,
            line.reason_note,
            line.customer_note,
        )
        if key in merged:
            previous = merged[key]
            merged[key] = ReturnLineInput(
                previous.fulfillment_line_item_gid,
                previous.quantity + line.quantity,
                previous.reason_definition_gid,
                previous.reason_note,
                previous.customer_note,
            )
        else:
            merged[key] = line
    return list(merged.values())


# --- parsing ---------------------------------------------------------------------------------


def _nodes(connection: Any) -> list[dict[str, Any]]:
    if not isinstance(connection, dict):
        return []
    return [node for node in connection.get("nodes") or [] if isinstance(node, dict)]


def parse_return(node: dict[str, Any]) -> ShopifyReturn:
    lines: list[tuple[str, int]] = []
    for line in _nodes(node.get("returnLineItems")):
        # Unverified return lines (no fulfillment line item) come back empty through the fragment.
        line_item = ((line.get("fulfillmentLineItem") or {}).get("lineItem") or {}).get("id")
        if line_item:
            lines.append((line_item, int(line.get("quantity") or 0)))
    rfo_gids: list[str] = []
    tracking: list[str] = []
    for rfo in _nodes(node.get("reverseFulfillmentOrders")):
        rfo_gids.append(rfo["id"])
        for delivery in _nodes(rfo.get("reverseDeliveries")):
            number = ((delivery.get("deliverable") or {}).get("tracking") or {}).get("number")
            if number and number not in tracking:
                tracking.append(number)
    return ShopifyReturn(
        gid=node["id"],
        name=node.get("name") or "",
        status=node.get("status") or "",
        lines=lines,
        reverse_fulfillment_order_gids=rfo_gids,
        tracking_numbers=tracking,
    )


# Reason-definition ids per shop, for the life of the process: they are Shopify-wide taxonomy ids
# that do not change, and resolving them on every event would double the calls.
_reason_cache_lock = threading.Lock()
_reason_cache: dict[tuple[int, str], dict[str, str | None]] = {}


def clear_reason_cache() -> None:
    with _reason_cache_lock:
        _reason_cache.clear()


class ShopifyAPI:
    """The operations the sync performs on one shop."""

    def __init__(self, client: ShopifyClient) -> None:
        self.client = client

    # -- reads --------------------------------------------------------------------------------

    def access_scopes(self) -> list[str]:
        data = self.client.execute(docs.ACCESS_SCOPES)
        installation = data.get("currentAppInstallation") or {}
        return [scope["handle"] for scope in installation.get("accessScopes") or [] if scope.get("handle")]

    def find_order_gid(self, name: str) -> str | None:
        """The GID of the order with this name (``#1106``), or None."""
        wanted = name.strip()
        # Quoted when it holds search-syntax characters; a bare `name:#1106` is what Shopify's
        # own admin search sends for the common case.
        term = wanted if wanted and all(c.isalnum() or c in "#-_." for c in wanted) else _quote(wanted)
        data = self.client.execute(docs.FIND_ORDER_BY_NAME, {"query": f"name:{term}"})
        for node in _nodes(data.get("orders")):
            # Shopify's search is fuzzy (tokenised); only an exact name is the order we mean.
            if str(node.get("name", "")).lower() == wanted.lower():
                return node["id"]
        return None

    def order(self, order_gid: str) -> OrderSnapshot | None:
        """Tags, note, line item quantities and every return of the order, or None if unknown."""
        try:
            data = self.client.execute(docs.ORDER_SNAPSHOT, {"id": order_gid})
        except NotFound:
            return None
        node = data.get("order")
        if not node:
            return None
        line_items = {
            line["id"]: (int(line.get("quantity") or 0), int(line.get("unfulfilledQuantity") or 0))
            for line in _nodes(node.get("lineItems"))
        }
        returns: list[ShopifyReturn] = []
        for shallow in _nodes(node.get("returns")):
            detailed = self.return_details(shallow["id"])
            if detailed is not None:
                returns.append(detailed)
        return OrderSnapshot(
            gid=node["id"],
            name=node.get("name") or "",
            tags=list(node.get("tags") or []),
            note=node.get("note"),
            line_items=line_items,
            returns=returns,
        )

    def return_details(self, return_gid: str) -> ShopifyReturn | None:
        try:
            data = self.client.execute(docs.RETURN_DETAILS, {"id": return_gid})
        except NotFound:
            return None
        node = data.get("return")
        return parse_return(node) if node else None

    def returnable_lines(self, order_gid: str) -> list[ReturnableLine]:
        """Fulfillment line items of the order with their still-returnable quantity (> 0)."""
        lines: list[ReturnableLine] = []
        after: str | None = None
        while True:
            data = self.client.execute(docs.RETURNABLE_FULFILLMENTS, {"orderId": order_gid, "after": after})
            connection = data.get("returnableFulfillments") or {}
            for fulfillment in _nodes(connection):
                for item in _nodes(fulfillment.get("returnableFulfillmentLineItems")):
                    fli = item.get("fulfillmentLineItem") or {}
                    quantity = int(item.get("quantity") or 0)
                    if fli.get("id") and quantity > 0:
                        line_item_gid = (fli.get("lineItem") or {}).get("id", "")
                        lines.append(ReturnableLine(fli["id"], line_item_gid, quantity))
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                return lines
            after = page["endCursor"]

    def reason_definition_ids(self, handles: Iterable[str] | None = None) -> dict[str, str]:
        """Handle -> ReturnReasonDefinition GID, resolved once per process per shop.

        Without ``handles``: every handle the reason map and the shop's overrides can produce.
        Handles Shopify does not know are left out of the answer (the caller falls back to Other).
        """
        shop = self.client.shop
        if handles is None:
            handles = mapping.all_reason_handles(shop.reason_overrides)
        wanted = sorted(set(handles))
        key = (shop.id, shop.domain)
        with _reason_cache_lock:
            cached = dict(_reason_cache.get(key, {}))
        missing = [handle for handle in wanted if handle not in cached]
        if missing:
            found = self._fetch_reason_definitions(missing)
            with _reason_cache_lock:
                entry = _reason_cache.setdefault(key, {})
                for handle in missing:
                    entry[handle] = found.get(handle)
                cached = dict(entry)
        return {handle: gid for handle in wanted if (gid := cached.get(handle))}

    def reason_definition_id(self, handle: str) -> str | None:
        """The definition GID for a handle, falling back to Other when the shop lacks the handle."""
        ids = self.reason_definition_ids([handle, mapping.OTHER_HANDLE])
        return ids.get(handle) or ids.get(mapping.OTHER_HANDLE)

    def _fetch_reason_definitions(self, handles: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        deleted: dict[str, str] = {}
        after: str | None = None
        while True:
            data = self.client.execute(docs.RETURN_REASON_DEFINITIONS, {"handles": handles, "after": after})
            connection = data.get("returnReasonDefinitions") or {}
            for node in _nodes(connection):
                # Deleted definitions stay valid on returns; a live one is preferred if both exist.
                target = deleted if node.get("deleted") else found
                target.setdefault(node["handle"], node["id"])
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                break
            after = page["endCursor"]
        return {**deleted, **found}

    # -- return mutations ---------------------------------------------------------------------

    def return_request(self, order_gid: str, lines: Sequence[ReturnLineInput]) -> ShopifyReturn:
        """A return in status REQUESTED (no reverse fulfilment order yet, so no tracking)."""
        # ReturnRequestLineItemInput has no returnReasonNote; customerNote is its only free text,
        # so it carries the reason note (which already holds the customer's own note).
        variables = {
            "input": {
                "orderId": order_gid,
                "returnLineItems": [
                    {
                        "fulfillmentLineItemId": line.fulfillment_line_item_gid,
                        "quantity": line.quantity,
                        **_reason_fields(line),
                        "customerNote": line.reason_note or line.customer_note,
                    }
                    for line in lines
                ],
            }
        }
        return self._return_mutation(docs.RETURN_REQUEST, variables, "returnRequest")

    def return_create(self, order_gid: str, lines: Sequence[ReturnLineInput]) -> ShopifyReturn:
        """A return in status OPEN, with its reverse fulfilment order. Not idempotent on Shopify."""
        variables = {
            "returnInput": {
                "orderId": order_gid,
                # Deprecated and ignored by Shopify, but the rule is explicit false everywhere.
                "notifyCustomer": False,
                "returnLineItems": [
                    {
                        "fulfillmentLineItemId": line.fulfillment_line_item_gid,
                        "quantity": line.quantity,
                        **_reason_fields(line),
                        # Shopify requires a note with Other on returnCreate; always sent.
                        "returnReasonNote": line.reason_note,
                    }
                    for line in lines
                ],
            }
        }
        return self._return_mutation(docs.RETURN_CREATE, variables, "returnCreate")

    def approve_request(self, return_gid: str) -> ShopifyReturn:
        variables = {"input": {"id": return_gid, "notifyCustomer": False}}
        return self._return_mutation(docs.RETURN_APPROVE_REQUEST, variables, "returnApproveRequest")

    def decline_request(self, return_gid: str, note: str | None = None) -> ShopifyReturn:
        """Decline a REQUESTED return (reason OTHER, customer not notified). Idempotent."""
        decline: dict[str, Any] = {"id": return_gid, "declineReason": "OTHER", "notifyCustomer": False}
        if note:
            decline["declineNote"] = note
        try:
            return self._return_mutation(
                docs.RETURN_DECLINE_REQUEST, {"input": decline}, "returnDeclineRequest"
            )
        except UserErrors as exc:
            # Unlike returnClose/returnCancel, Shopify answers a repeated decline with an error; a
            # replay must not turn into a conflict, so it is treated as the success it is.
            if exc.messages == [ALREADY_DECLINED_MESSAGE]:
                current = self.return_details(return_gid)
                if current is not None:
                    return current
            raise

    def close(self, return_gid: str) -> ShopifyReturn:
        """Close an OPEN return (closing a CLOSED one succeeds on Shopify)."""
        return self._return_mutation(docs.RETURN_CLOSE, {"id": return_gid}, "returnClose")

    def cancel(self, return_gid: str) -> ShopifyReturn:
        """Cancel an OPEN return (cancelling a CANCELED one succeeds on Shopify)."""
        return self._return_mutation(docs.RETURN_CANCEL, {"id": return_gid}, "returnCancel")

    def add_tracking(self, reverse_fulfillment_order_gid: str, number: str, url: str | None = None) -> None:
        """A reverse delivery with the platform's tracking, covering every line, buyer not notified.

        Not idempotent: each call adds a delivery. Check ``ShopifyReturn.tracking_numbers`` first.
        """
        tracking: dict[str, str] = {"number": number}
        if url:
            tracking["url"] = url
        variables = {"reverseFulfillmentOrderId": reverse_fulfillment_order_gid, "trackingInput": tracking}
        self._mutate(
            docs.REVERSE_DELIVERY_CREATE_WITH_SHIPPING, variables, "reverseDeliveryCreateWithShipping"
        )

    # -- order mutations ----------------------------------------------------------------------

    def tags_add(self, order_gid: str, tags: Sequence[str]) -> list[str]:
        """Add tags (additive, case-insensitive on Shopify); returns the order's tags after it."""
        payload = self._mutate(docs.TAGS_ADD, {"id": order_gid, "tags": list(tags)}, "tagsAdd")
        return list((payload.get("node") or {}).get("tags") or [])

    def tags_remove(self, order_gid: str, tags: Sequence[str]) -> list[str]:
        """Remove tags (only those named); returns the order's tags after it."""
        payload = self._mutate(docs.TAGS_REMOVE, {"id": order_gid, "tags": list(tags)}, "tagsRemove")
        return list((payload.get("node") or {}).get("tags") or [])

    def set_note(self, order_gid: str, note: str) -> None:
        """Overwrite the order note (the caller built it from a fresh read; see mapping)."""
        self._mutate(docs.ORDER_UPDATE_NOTE, {"input": {"id": order_gid, "note": note}}, "orderUpdate")

    # -- internals ----------------------------------------------------------------------------

    def _mutate(self, document: str, variables: dict[str, Any], root: str) -> dict[str, Any]:
        data = self.client.execute(document, variables)
        payload = data.get(root)
        operation = operation_of(document)[1]
        if not isinstance(payload, dict):
            raise ShopifyGraphQLError([{"message": f"{operation}: empty payload for {root}"}])
        errors = payload.get("userErrors") or []
        if errors:
            raise UserErrors(errors, classify_user_errors(errors), operation)
        return payload

    def _return_mutation(self, document: str, variables: dict[str, Any], root: str) -> ShopifyReturn:
        payload = self._mutate(document, variables, root)
        node = payload.get("return")
        if not node:
            raise ShopifyGraphQLError([{"message": f"{root} returned no return and no userErrors"}])
        return parse_return(node)


def _reason_fields(line: ReturnLineInput) -> dict[str, Any]:
    if line.reason_definition_gid:
        return {"returnReasonDefinitionId": line.reason_definition_gid}
    # No definition id resolved for the shop (an unknown handle and no "other-reason" either):
    # the deprecated enum still works in 2026-07 and beats a return Shopify refuses outright.
    return {"returnReason": "OTHER"}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
