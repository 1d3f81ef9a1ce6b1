"""Typed Shopify operations for the sync, over ``ShopifyClient``.

Reads return dataclasses; mutations return the resulting ``ShopifyReturn`` (or nothing) and raise
``UserErrors`` with a ``kind`` the sync acts on (see ``classify_user_errors``). Transport-level
errors (``OutcomeUnknown``, ``Throttled``, ``AccessDenied``...) come from the client unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal

from workers import mapping
from workers.shopify import documents as docs
from workers.shopify.client import ShopifyClient, operation_of
from workers.shopify.errors import NotFound, ShopifyError, ShopifyGraphQLError
from workers.shopify.models import LiveOrder, ReturnableLine, ReturnLineInput, ShopifyReturn
from workers.statuses import ShopifyStatus

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
        status=ShopifyStatus(node["status"]),
        lines=tuple(lines),
        reverse_fulfillment_order_gids=tuple(rfo_gids),
        tracking_numbers=tuple(tracking),
    )


# A shop's reason definitions (handle -> GID), for the life of the process: they are Shopify-wide
# taxonomy ids that do not change, about twenty per shop, read in one paged query on first use.
_reason_cache_lock = threading.Lock()
_reason_cache: dict[str, dict[str, str]] = {}


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

    def order(self, order_gid: str) -> LiveOrder | None:
        """Tags, note, line item quantities and every return of the order, or None if unknown."""
        try:
            data = self.client.execute(docs.LIVE_ORDER, {"id": order_gid})
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
        return LiveOrder(
            gid=node["id"],
            name=node.get("name") or "",
            tags=tuple(node.get("tags") or ()),
            note=node.get("note"),
            line_items=line_items,
            returns=tuple(returns),
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

    def reason_definition_id(self, handle: str) -> str | None:
        """The definition GID for a handle, falling back to Other when the shop lacks the handle."""
        definitions = self.reason_definitions()
        return definitions.get(handle) or definitions.get(mapping.OTHER_HANDLE)

    def reason_definitions(self) -> dict[str, str]:
        """Every reason definition of the shop, handle -> GID, read once per process."""
        key = self.client.endpoint.shop_domain
        with _reason_cache_lock:
            cached = _reason_cache.get(key)
        if cached is not None:
            return cached
        found: dict[str, str] = {}
        deleted: dict[str, str] = {}
        after: str | None = None
        while True:
            data = self.client.execute(docs.RETURN_REASON_DEFINITIONS, {"after": after})
            connection = data.get("returnReasonDefinitions") or {}
            for node in _nodes(connection):
                # Deleted definitions stay valid on returns; a live one is preferred if both exist.
                target = deleted if node.get("deleted") else found
                target.setdefault(node["handle"], node["id"])
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                break
            after = page["endCursor"]
        definitions = {**deleted, **found}
        with _reason_cache_lock:
            _reason_cache[key] = definitions
        return definitions

    # -- return mutations ---------------------------------------------------------------------

    def return_request(self, order_gid: str, lines: Sequence[ReturnLineInput]) -> ShopifyReturn:
        """A return in status REQUESTED (no reverse fulfilment order yet, so no tracking).

        ReturnRequestLineItemInput has no returnReasonNote; its ``customerNote`` is exactly what
        the buyer wrote, and absent when they wrote nothing (merchants read it as the buyer's).
        """
        variables = {
            "input": {
                "orderId": order_gid,
                "returnLineItems": [
                    {
                        "fulfillmentLineItemId": line.fulfillment_line_item_gid,
                        "quantity": line.quantity,
                        **_reason_fields(line),
                        **({"customerNote": line.customer_note} if line.customer_note else {}),
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
                        # Exactly the original reason text (Shopify requires one with Other).
                        **({"returnReasonNote": line.reason_note} if line.reason_note else {}),
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

    def tags_add(self, order_gid: str, tags: Sequence[str]) -> tuple[str, ...]:
        """Add tags (additive, case-insensitive on Shopify); returns the order's tags after it."""
        payload = self._mutate(docs.TAGS_ADD, {"id": order_gid, "tags": list(tags)}, "tagsAdd")
        return tuple((payload.get("node") or {}).get("tags") or ())

    def tags_remove(self, order_gid: str, tags: Sequence[str]) -> tuple[str, ...]:
        """Remove tags (only those named); returns the order's tags after it."""
        payload = self._mutate(docs.TAGS_REMOVE, {"id": order_gid, "tags": list(tags)}, "tagsRemove")
        return tuple((payload.get("node") or {}).get("tags") or ())

    def set_note(self, order_gid: str, note: str) -> None:
        """Overwrite the order note (the caller built it from a fresh read; see mapping)."""
        self._mutate(docs.ORDER_UPDATE_NOTE, {"input": {"id": order_gid, "note": note}}, "orderUpdate")

    # -- app -----------------------------------------------------------------------------------

    def subscribe_webhook(self, topic: str, uri: str) -> None:
        """Subscribe the shop's ``topic`` (e.g. ``FULFILLMENTS_CREATE``) to ``uri``; idempotent."""
        try:
            self._mutate(
                docs.WEBHOOK_SUBSCRIPTION_CREATE, {"topic": topic, "uri": uri}, "webhookSubscriptionCreate"
            )
        except UserErrors as exc:
            if not any("already been taken" in message for message in exc.messages):
                raise

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
