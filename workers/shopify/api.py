"""Typed Shopify operations for the sync, over ``ShopifyClient``.

Reads return dataclasses; mutations return the resulting ``ShopifyReturn`` (or nothing) and raise
``UserErrors`` with a ``kind`` the sync acts on (see ``classify_user_errors``). Transport-level
errors (``OutcomeUnknown``, ``Throttled``, ``AccessDenied``...) come from the client unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast

from workers import mapping
from workers.shopify import batch
from workers.shopify import documents as docs
from workers.shopify.client import ShopifyClient, operation_of
from workers.shopify.errors import CostTooHigh, NotFound, ShopifyError, ShopifyGraphQLError
from workers.shopify.models import LiveOrder, ReturnableLine, ReturnLineInput, ShopifyReturn
from workers.statuses import ShopifyStatus

T = TypeVar("T")
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
        """The order as it is now, in one request: tags, note, line items, every return in full and
        what is still returnable (and the shop's reason definitions on a process's first read).
        Read on in pages only when the order has more than a page holds (read again with a larger
        page of nested lines when a return's or a fulfilment's lines filled theirs); asked for in
        smaller pages when the shop's bucket cannot hold the whole read. None if Shopify does not
        know the order."""
        pages = dict(docs.SNAPSHOT_PAGES)
        fewest_items = 1  # a page of nested lines smaller than this is known to cut lines off
        while True:
            read = self._snapshot(order_gid, pages, fewest_items)
            if read is None:
                return None
            data, node, pages = read
            returns = self._read_on(
                node.get("returns"),
                docs.ORDER_RETURNS_PAGE,
                {"id": order_gid, "first": pages["returns"], "items": pages["items"]},
                ("order", "returns"),
            )
            fulfillments = self._read_on(
                data.get("returnableFulfillments"),
                docs.RETURNABLE_FULFILLMENTS,
                {"orderId": order_gid, "first": pages["fulfillments"], "items": pages["items"]},
                ("returnableFulfillments",),
            )
            larger = [size for size in docs.ITEMS_PAGES if size > pages["items"]]
            if not larger or not _lines_cut_off(returns, fulfillments, pages["items"]):
                break
            fewest_items = pages["items"] = larger[0]
        lines = self._read_on(
            node.get("lineItems"),
            docs.ORDER_LINES_PAGE,
            {"id": order_gid, "first": pages["lines"]},
            ("order", "lineItems"),
        )
        return LiveOrder(
            gid=node["id"],
            name=node.get("name") or "",
            tags=tuple(node.get("tags") or ()),
            note=node.get("note"),
            line_items={
                line["id"]: (int(line.get("quantity") or 0), int(line.get("unfulfilledQuantity") or 0))
                for line in lines
            },
            returns=tuple(parse_return(r) for r in returns),
            returnable=_returnable(fulfillments),
        )

    def _snapshot(
        self, order_gid: str, pages: dict[str, int], fewest_items: int
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]] | None:
        """One snapshot read (the reasons with it on a process's first read of the shop), in pages
        halved until the shop's bucket can hold it, nested lines never below ``fewest_items``.
        Returns the data, the order node and the pages it was read with; None for no such order."""
        while True:
            with_reasons = self._reasons_cached() is None
            variables: dict[str, Any] = {"id": order_gid, **pages}
            if not with_reasons:
                variables.pop("reasons")
            document = docs.ORDER_SNAPSHOT_WITH_REASONS if with_reasons else docs.ORDER_SNAPSHOT
            try:
                data = self.client.execute(document, variables)
                break
            except NotFound:
                return None
            except CostTooHigh:
                smaller = {name: max(1, size // 2) for name, size in pages.items()}
                smaller["items"] = max(fewest_items, smaller["items"])
                if smaller == pages:
                    raise  # one of everything is still too dear: nothing smaller to ask for
                pages = smaller
        node = data.get("order")
        if not node:
            return None
        if with_reasons:
            self._cache_reasons(
                self._read_on(
                    data.get("returnReasonDefinitions"),
                    docs.RETURN_REASON_DEFINITIONS,
                    {"first": pages["reasons"]},
                    ("returnReasonDefinitions",),
                )
            )
        return data, node, pages

    def _read_on(
        self, connection: Any, document: str, variables: dict[str, Any], path: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        """Every node of a connection: the first page as read, the others with ``document``."""
        nodes = _nodes(connection)
        page = (connection or {}).get("pageInfo") or {} if isinstance(connection, dict) else {}
        while page.get("hasNextPage") and page.get("endCursor"):
            data: Any = self.client.execute(document, {**variables, "after": page["endCursor"]})
            for key in path:
                data = (data or {}).get(key) if isinstance(data, dict) else None
            nodes.extend(_nodes(data))
            page = (data or {}).get("pageInfo") or {} if isinstance(data, dict) else {}
        return nodes

    def return_details(self, return_gid: str) -> ShopifyReturn | None:
        try:
            data = self.client.execute(docs.RETURN_DETAILS, {"id": return_gid})
        except NotFound:
            return None
        node = data.get("return")
        return parse_return(node) if node else None

    def returnable_lines(self, order_gid: str) -> list[ReturnableLine]:
        """Fulfillment line items of the order with their still-returnable quantity (> 0)."""
        # Read alone, not as part of a snapshot: the largest page of lines per fulfilment.
        items = docs.ITEMS_PAGES[-1]
        variables = {"orderId": order_gid, "first": docs.SNAPSHOT_PAGES["fulfillments"], "items": items}
        data = self.client.execute(docs.RETURNABLE_FULFILLMENTS, {**variables, "after": None})
        connection = data.get("returnableFulfillments")
        return list(
            _returnable(
                self._read_on(
                    connection, docs.RETURNABLE_FULFILLMENTS, variables, ("returnableFulfillments",)
                )
            )
        )

    def reason_definition_id(self, handle: str) -> str | None:
        """The definition GID for a handle, falling back to Other when the shop lacks the handle."""
        definitions = self.reason_definitions()
        return definitions.get(handle) or definitions.get(mapping.OTHER_HANDLE)

    def reason_definitions(self) -> dict[str, str]:
        """Every reason definition of the shop, handle -> GID, read once per process (with the
        first order snapshot, or on its own when asked first)."""
        cached = self._reasons_cached()
        if cached is not None:
            return cached
        variables = {"first": docs.SNAPSHOT_PAGES["reasons"]}
        data = self.client.execute(docs.RETURN_REASON_DEFINITIONS, {**variables, "after": None})
        return self._cache_reasons(
            self._read_on(
                data.get("returnReasonDefinitions"),
                docs.RETURN_REASON_DEFINITIONS,
                variables,
                ("returnReasonDefinitions",),
            )
        )

    def _reasons_cached(self) -> dict[str, str] | None:
        with _reason_cache_lock:
            return _reason_cache.get(self.client.endpoint.shop_domain)

    def _cache_reasons(self, nodes: list[dict[str, Any]]) -> dict[str, str]:
        found: dict[str, str] = {}
        deleted: dict[str, str] = {}
        for node in nodes:
            # Deleted definitions stay valid on returns; a live one is preferred if both exist.
            target = deleted if node.get("deleted") else found
            target.setdefault(node["handle"], node["id"])
        definitions = {**deleted, **found}
        with _reason_cache_lock:
            _reason_cache[self.client.endpoint.shop_domain] = definitions
        return definitions

    # -- mutations ------------------------------------------------------------------------------
    #
    # Each mutation is first a ``Mutation`` value (document, variables, how to read its answer),
    # so a run can send several together (``together``); the plain methods send one.

    def together(self, mutations: Sequence[Mutation[Any]]) -> list[Any]:
        """Send the mutations in one document, run in order by Shopify. Per mutation: its result,
        or the ``UserErrors`` it was answered with (the others' results still count)."""
        if not mutations:
            return []
        if len(mutations) == 1:
            only = mutations[0]
            data = self.client.execute(only.document, only.variables)
            return [only.read(data.get(only.root))]
        composed = batch.compose(tuple(m.document for m in mutations))
        data = self.client.execute(composed.document, composed.variables([m.variables for m in mutations]))
        return [m.read(data.get(alias)) for m, alias in zip(mutations, composed.aliases, strict=True)]

    def run(self, mutation: Mutation[T]) -> T:
        """Send one mutation; its userErrors are raised."""
        (result,) = self.together([mutation])
        if isinstance(result, UserErrors):
            raise result
        return cast(T, result)

    def return_request(self, order_gid: str, lines: Sequence[ReturnLineInput]) -> ShopifyReturn:
        return self.run(return_request(order_gid, lines))

    def return_create(self, order_gid: str, lines: Sequence[ReturnLineInput]) -> ShopifyReturn:
        return self.run(return_create(order_gid, lines))

    def approve_request(self, return_gid: str) -> ShopifyReturn:
        return self.run(approve_request(return_gid))

    def decline_request(self, return_gid: str, note: str | None = None) -> ShopifyReturn:
        """Decline a REQUESTED return (reason OTHER, customer not notified). Idempotent."""
        try:
            return self.run(decline_request(return_gid, note))
        except UserErrors as exc:
            # Unlike returnClose/returnCancel, Shopify answers a repeated decline with an error; a
            # replay must not turn into a conflict, so it is treated as the success it is.
            if exc.messages == [ALREADY_DECLINED_MESSAGE]:
                current = self.return_details(return_gid)
                if current is not None:
                    return current
            raise

    def close(self, return_gid: str) -> ShopifyReturn:
        return self.run(close(return_gid))

    def cancel(self, return_gid: str) -> ShopifyReturn:
        return self.run(cancel(return_gid))

    def add_tracking(self, reverse_fulfillment_order_gid: str, number: str, url: str | None = None) -> None:
        self.run(add_tracking(reverse_fulfillment_order_gid, number, url))

    def tags_add(self, order_gid: str, tags: Sequence[str]) -> tuple[str, ...]:
        return self.run(tags_add(order_gid, tags))

    def tags_remove(self, order_gid: str, tags: Sequence[str]) -> tuple[str, ...]:
        return self.run(tags_remove(order_gid, tags))

    def set_note(self, order_gid: str, note: str) -> str | None:
        return self.run(set_note(order_gid, note))

    # -- app -----------------------------------------------------------------------------------

    def subscribe_webhook(self, topic: str, uri: str) -> None:
        """Subscribe the shop's ``topic`` (e.g. ``FULFILLMENTS_CREATE``) to ``uri``; idempotent."""
        mutation = Mutation(
            docs.WEBHOOK_SUBSCRIPTION_CREATE,
            {"topic": topic, "uri": uri},
            "webhookSubscriptionCreate",
            _payload,
        )
        try:
            self.run(mutation)
        except UserErrors as exc:
            if not any("already been taken" in message for message in exc.messages):
                raise


def _lines_cut_off(returns: list[dict[str, Any]], fulfillments: list[dict[str, Any]], page: int) -> bool:
    """Whether a return's or a fulfilment's lines filled their page: there may be more."""
    nested = [r.get("returnLineItems") for r in returns]
    nested += [f.get("returnableFulfillmentLineItems") for f in fulfillments]
    return any(len(_nodes(connection)) >= page for connection in nested)


def _returnable(fulfillments: list[dict[str, Any]]) -> tuple[ReturnableLine, ...]:
    lines: list[ReturnableLine] = []
    for fulfillment in fulfillments:
        for item in _nodes(fulfillment.get("returnableFulfillmentLineItems")):
            fli = item.get("fulfillmentLineItem") or {}
            quantity = int(item.get("quantity") or 0)
            if fli.get("id") and quantity > 0:
                line_item_gid = (fli.get("lineItem") or {}).get("id", "")
                lines.append(ReturnableLine(fli["id"], line_item_gid, quantity))
    return tuple(lines)


def _reason_fields(line: ReturnLineInput) -> dict[str, Any]:
    if line.reason_definition_gid:
        return {"returnReasonDefinitionId": line.reason_definition_gid}
    # No definition id resolved for the shop (an unknown handle and no "other-reason" either):
    # the deprecated enum still works in 2026-07 and beats a return Shopify refuses outright.
    return {"returnReason": "OTHER"}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- mutations as values ---------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation(Generic[T]):
    """One mutation: its document, variables, root field, and how its payload becomes a result."""

    document: str
    variables: dict[str, Any]
    root: str
    parse: Callable[[dict[str, Any]], T]

    @property
    def operation(self) -> str:
        return operation_of(self.document)[1]

    def read(self, payload: Any) -> T | UserErrors:
        if not isinstance(payload, dict):
            raise ShopifyGraphQLError([{"message": f"{self.operation}: empty payload for {self.root}"}])
        errors = payload.get("userErrors") or []
        if errors:
            return UserErrors(errors, classify_user_errors(errors), self.operation)
        return self.parse(payload)


def _payload(payload: dict[str, Any]) -> dict[str, Any]:
    return payload


def _returned(root: str) -> Callable[[dict[str, Any]], ShopifyReturn]:
    def parse(payload: dict[str, Any]) -> ShopifyReturn:
        node = payload.get("return")
        if not node:
            raise ShopifyGraphQLError([{"message": f"{root} returned no return and no userErrors"}])
        return parse_return(node)

    return parse


def _order_tags(payload: dict[str, Any]) -> tuple[str, ...]:
    return tuple((payload.get("node") or {}).get("tags") or ())


def _order_note(payload: dict[str, Any]) -> str | None:
    return (payload.get("order") or {}).get("note")


def _nothing(payload: dict[str, Any]) -> None:
    return None


def return_request(order_gid: str, lines: Sequence[ReturnLineInput]) -> Mutation[ShopifyReturn]:
    """A return in status REQUESTED (no reverse fulfilment order yet, so no tracking).

    ReturnRequestLineItemInput has no returnReasonNote; its ``customerNote`` is exactly what the
    buyer wrote, and absent when they wrote nothing (merchants read it as the buyer's).
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
    return Mutation(docs.RETURN_REQUEST, variables, "returnRequest", _returned("returnRequest"))


def return_create(order_gid: str, lines: Sequence[ReturnLineInput]) -> Mutation[ShopifyReturn]:
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
    return Mutation(docs.RETURN_CREATE, variables, "returnCreate", _returned("returnCreate"))


def approve_request(return_gid: str) -> Mutation[ShopifyReturn]:
    variables = {"input": {"id": return_gid, "notifyCustomer": False}}
    return Mutation(
        docs.RETURN_APPROVE_REQUEST, variables, "returnApproveRequest", _returned("returnApproveRequest")
    )


def decline_request(return_gid: str, note: str | None = None) -> Mutation[ShopifyReturn]:
    decline: dict[str, Any] = {"id": return_gid, "declineReason": "OTHER", "notifyCustomer": False}
    if note:
        decline["declineNote"] = note
    return Mutation(
        docs.RETURN_DECLINE_REQUEST,
        {"input": decline},
        "returnDeclineRequest",
        _returned("returnDeclineRequest"),
    )


def close(return_gid: str) -> Mutation[ShopifyReturn]:
    """Close an OPEN return (closing a CLOSED one succeeds on Shopify)."""
    return Mutation(docs.RETURN_CLOSE, {"id": return_gid}, "returnClose", _returned("returnClose"))


def cancel(return_gid: str) -> Mutation[ShopifyReturn]:
    """Cancel an OPEN return (cancelling a CANCELED one succeeds on Shopify)."""
    return Mutation(docs.RETURN_CANCEL, {"id": return_gid}, "returnCancel", _returned("returnCancel"))


def add_tracking(reverse_fulfillment_order_gid: str, number: str, url: str | None = None) -> Mutation[None]:
    """A reverse delivery with the platform's tracking, covering every line, buyer not notified.

    Not idempotent: each call adds a delivery. Check ``ShopifyReturn.tracking_numbers`` first.
    """
    tracking: dict[str, str] = {"number": number}
    if url:
        tracking["url"] = url
    variables = {"reverseFulfillmentOrderId": reverse_fulfillment_order_gid, "trackingInput": tracking}
    return Mutation(
        docs.REVERSE_DELIVERY_CREATE_WITH_SHIPPING, variables, "reverseDeliveryCreateWithShipping", _nothing
    )


def tags_add(order_gid: str, tags: Sequence[str]) -> Mutation[tuple[str, ...]]:
    """Add tags (additive, case-insensitive on Shopify); the result is the order's tags after it."""
    return Mutation(docs.TAGS_ADD, {"id": order_gid, "tags": list(tags)}, "tagsAdd", _order_tags)


def tags_remove(order_gid: str, tags: Sequence[str]) -> Mutation[tuple[str, ...]]:
    """Remove tags (only those named); the result is the order's tags after it."""
    return Mutation(docs.TAGS_REMOVE, {"id": order_gid, "tags": list(tags)}, "tagsRemove", _order_tags)


def set_note(order_gid: str, note: str) -> Mutation[str | None]:
    """Overwrite the order note (the caller built it from a fresh read; see mapping)."""
    return Mutation(
        docs.ORDER_UPDATE_NOTE, {"input": {"id": order_gid, "note": note}}, "orderUpdate", _order_note
    )
