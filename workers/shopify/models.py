"""What the sync reads from and sends to Shopify, as frozen values (parsed by ``workers.shopify.api``).

``LiveOrder`` is the order as Shopify holds it *now* (tags, note, fulfilment, every return): the
run plans from it, so a lost answer, a crash or a staff edit is seen rather than assumed away.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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

    def has_tag(self, tag: str) -> bool:
        """Shopify tags are case-insensitive."""
        return tag.lower() in {t.lower() for t in self.tags}

    def return_by_gid(self, gid: str) -> ShopifyReturn | None:
        return next((r for r in self.returns if r.gid == gid), None)

    def with_return(self, shopify_return: ShopifyReturn) -> LiveOrder:
        others = tuple(r for r in self.returns if r.gid != shopify_return.gid)
        return replace(self, returns=(*others, shopify_return))

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
