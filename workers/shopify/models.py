"""What the sync reads from and sends to Shopify, as frozen values (parsed by ``workers.shopify.api``).

``LiveOrder`` is the order as Shopify holds it *now* (tags, note, fulfilment, every return): the
run plans from it, so a lost answer, a crash or a staff edit is seen rather than assumed away.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from workers.statuses import ShopifyStatus


@dataclass(frozen=True)
class ShopifyReturn:
    gid: str
    name: str
    status: ShopifyStatus
    lines: tuple[tuple[str, int], ...]  # (line item GID, quantity), one per return line
    reverse_fulfillment_order_gids: tuple[str, ...] = ()
    tracking_numbers: tuple[str, ...] = ()

    def quantities_by_line_item(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for line_item_gid, quantity in self.lines:
            totals[line_item_gid] = totals.get(line_item_gid, 0) + quantity
        return totals

    def with_tracking(self, number: str) -> ShopifyReturn:
        return replace(self, tracking_numbers=(*self.tracking_numbers, number))


@dataclass(frozen=True)
class LiveOrder:
    gid: str
    name: str
    tags: tuple[str, ...]
    note: str | None
    line_items: dict[str, tuple[int, int]] = field(hash=False)  # GID -> (quantity, unfulfilled)
    returns: tuple[ShopifyReturn, ...] = ()
    # Fulfillment line items still returnable, as read; None when not read with the order (a
    # snapshot the sync kept, or after a return was created: quantities have changed).
    returnable: tuple[ReturnableLine, ...] | None = None

    def has_tag(self, tag: str) -> bool:
        """Shopify tags are case-insensitive."""
        return tag.lower() in {t.lower() for t in self.tags}

    def return_by_gid(self, gid: str) -> ShopifyReturn | None:
        return next((r for r in self.returns if r.gid == gid), None)

    def with_return(self, shopify_return: ShopifyReturn) -> LiveOrder:
        others = tuple(r for r in self.returns if r.gid != shopify_return.gid)
        known = self.return_by_gid(shopify_return.gid) is not None
        # A new return holds some of what was returnable: that list is stale now.
        return replace(self, returns=(*others, shopify_return), returnable=self.returnable if known else None)

    def fulfilled_quantity(self, line_item_gid: str) -> int:
        quantity, unfulfilled = self.line_items.get(line_item_gid, (0, 0))
        return quantity - unfulfilled


@dataclass(frozen=True)
class ReturnableLine:
    fulfillment_line_item_gid: str
    line_item_gid: str
    quantity: int  # still returnable


@dataclass(frozen=True)
class ReturnLineInput:
    """One line of a returnRequest/returnCreate, on a fulfillment line item."""

    fulfillment_line_item_gid: str
    quantity: int
    reason_definition_gid: str | None
    reason_note: str | None  # returnCreate's returnReasonNote: the original reason text
    customer_note: str | None = None  # returnRequest's customerNote: the buyer's own note


def order_to_json(order: LiveOrder) -> dict[str, Any]:
    """A LiveOrder as JSON (what ``workers.store.snapshots`` keeps); what was returnable is left
    out, since any return created later changes it."""
    return {
        "gid": order.gid,
        "name": order.name,
        "tags": list(order.tags),
        "note": order.note,
        "line_items": {gid: list(quantities) for gid, quantities in order.line_items.items()},
        "returns": [
            {
                "gid": r.gid,
                "name": r.name,
                "status": str(r.status),
                "lines": [list(line) for line in r.lines],
                "reverse_fulfillment_order_gids": list(r.reverse_fulfillment_order_gids),
                "tracking_numbers": list(r.tracking_numbers),
            }
            for r in order.returns
        ],
    }


def order_from_json(data: dict[str, Any]) -> LiveOrder:
    return LiveOrder(
        gid=data["gid"],
        name=data["name"],
        tags=tuple(data["tags"]),
        note=data["note"],
        line_items={gid: (int(q[0]), int(q[1])) for gid, q in data["line_items"].items()},
        returns=tuple(
            ShopifyReturn(
                gid=r["gid"],
                name=r["name"],
                status=ShopifyStatus(r["status"]),
                lines=tuple((str(line[0]), int(line[1])) for line in r["lines"]),
                reverse_fulfillment_order_gids=tuple(r["reverse_fulfillment_order_gids"]),
                tracking_numbers=tuple(r["tracking_numbers"]),
            )
            for r in data["returns"]
        ),
    )
