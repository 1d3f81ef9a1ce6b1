"""Which Shopify lines a platform return stands for, as pure functions beside the planner.

- ``plan_return_lines``: the event's items (line items) onto Shopify's returnable fulfillment line
  items, or the ``Shortfall`` that stops the create;
- ``adoptable``: the Shopify return an earlier run created for this platform return before its
  answer was lost (create mutations are not idempotent, so it must be found, never repeated).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from workers.shopify.models import ReturnableLine, ReturnLineInput, ShopifyReturn


@dataclass(frozen=True)
class MappedItem:
    """One item of a platform return, with its reason already mapped for the shop."""

    line_item_gid: str
    quantity: int
    reason_definition_gid: str | None
    reason_note: str | None
    customer_note: str | None = None


@dataclass(frozen=True)
class ShortfallItem:
    line_item_gid: str
    requested: int
    returnable: int


@dataclass(frozen=True)
class Shortfall:
    """Items whose line item has less returnable quantity on Shopify than the event asks for."""

    items: tuple[ShortfallItem, ...]


def plan_return_lines(
    items: Sequence[MappedItem], returnable_lines: Sequence[ReturnableLine]
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
        return Shortfall(tuple(short))
    return _merge_same_lines(planned)


def _merge_same_lines(lines: list[ReturnLineInput]) -> list[ReturnLineInput]:
    # Two event items for the same line item and reason become one Shopify line, not two lines on
    # the same fulfillment line item.
    merged: dict[tuple[str, str | None, str | None, str | None], ReturnLineInput] = {}
    for line in lines:
        key = (
            line.fulfillment_line_item_gid,
            line.reason_definition_gid,
            line.reason_note,
            line.customer_note,
        )
        previous = merged.get(key)
        merged[key] = (
            line if previous is None else replace(previous, quantity=previous.quantity + line.quantity)
        )
    return list(merged.values())


def adoptable(
    candidates: Iterable[ShopifyReturn],
    wanted: Mapping[str, int],
    owners: Mapping[str, int],
    return_id: int,
) -> ShopifyReturn | None:
    """A live Shopify return with exactly the ``wanted`` quantities per line item that no other
    platform return owns (``owners``: Shopify Return GID -> our return row id)."""
    if not wanted:
        return None
    for candidate in candidates:
        if not candidate.status.holds_items or owners.get(candidate.gid, return_id) != return_id:
            continue
        if candidate.quantities_by_line_item() == dict(wanted):
            return candidate
    return None
