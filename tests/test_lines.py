"""Which Shopify lines a platform return stands for: line planning and adoption, pure."""

from __future__ import annotations

from workers.lines import MappedItem, Shortfall, ShortfallItem, adoptable, plan_return_lines
from workers.shopify.models import ReturnableLine, ReturnLineInput, ShopifyReturn
from workers.statuses import ShopifyStatus


def item(line_item: str, quantity: int, reason: str | None = "R9", note: str = "note") -> MappedItem:
    return MappedItem(line_item, quantity, reason, note)


def test_a_line_item_is_taken_from_its_fulfillment_line_items_in_turn() -> None:
    returnable = [ReturnableLine("F1", "L1", 1), ReturnableLine("F2", "L1", 2), ReturnableLine("F3", "L2", 5)]
    plan = plan_return_lines([item("L1", 3), item("L2", 1)], returnable)
    assert plan == [
        ReturnLineInput("F1", 1, "R9", "note"),
        ReturnLineInput("F2", 2, "R9", "note"),
        ReturnLineInput("F3", 1, "R9", "note"),
    ]


def test_quantity_used_by_one_item_is_not_offered_to_the_next() -> None:
    returnable = [ReturnableLine("F1", "L1", 2)]
    plan = plan_return_lines([item("L1", 1, note="a"), item("L1", 1, note="b")], returnable)
    assert plan == [ReturnLineInput("F1", 1, "R9", "a"), ReturnLineInput("F1", 1, "R9", "b")]
    assert plan_return_lines([item("L1", 1), item("L1", 1)], returnable) == [
        ReturnLineInput("F1", 2, "R9", "note")
    ]
    short = plan_return_lines([item("L1", 2), item("L1", 1)], returnable)
    assert short == Shortfall((ShortfallItem("L1", requested=1, returnable=0),))


def test_a_shortfall_names_every_item_lacking_returnable_quantity() -> None:
    returnable = [ReturnableLine("F1", "L1", 1)]
    plan = plan_return_lines([item("L1", 2), item("L2", 1), item("L1", 0)], returnable)
    assert plan == Shortfall((ShortfallItem("L1", 2, 1), ShortfallItem("L2", 1, 0)))
    assert plan_return_lines([item("L1", 1)], []) == Shortfall((ShortfallItem("L1", 1, 0),))


def ret(gid: str, status: ShopifyStatus, *lines: tuple[str, int]) -> ShopifyReturn:
    return ShopifyReturn(gid, f"#1-{gid}", status, tuple(lines))


WANTED = {"L1": 2, "L2": 1}


def test_adopts_the_live_return_with_exactly_its_lines() -> None:
    mine = ret("S2", ShopifyStatus.OPEN, ("L1", 1), ("L2", 1), ("L1", 1))
    candidates = [ret("S1", ShopifyStatus.OPEN, ("L1", 2)), mine]
    assert adoptable(candidates, WANTED, owners={}, return_id=7) == mine


def test_never_adopts_a_return_another_platform_return_owns_or_one_that_gave_its_items_back() -> None:
    owned = ret("S1", ShopifyStatus.OPEN, ("L1", 2), ("L2", 1))
    declined = ret("S2", ShopifyStatus.DECLINED, ("L1", 2), ("L2", 1))
    cancelled = ret("S3", ShopifyStatus.CANCELED, ("L1", 2), ("L2", 1))
    assert adoptable([owned, declined, cancelled], WANTED, owners={"S1": 8}, return_id=7) is None
    # Our own mapping is not someone else's.
    assert adoptable([owned], WANTED, owners={"S1": 7}, return_id=7) == owned
    # A closed return still holds its items: adoptable.
    closed = ret("S4", ShopifyStatus.CLOSED, ("L1", 2), ("L2", 1))
    assert adoptable([closed], WANTED, owners={}, return_id=7) == closed


def test_nothing_is_adopted_for_a_return_without_items() -> None:
    assert adoptable([ret("S1", ShopifyStatus.OPEN)], {}, owners={}, return_id=7) is None
