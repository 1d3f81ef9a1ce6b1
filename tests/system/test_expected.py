"""bench.expected: the chaos run's oracle must itself be right, or a green chaos run proves nothing."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

from bench.expected import compare, expected_orders, summarize

EXAMPLES = Path(__file__).resolve().parents[2] / "bench" / "examples"
SHOP = "acme-nl.myshopify.com"
O1106 = "gid://shopify/Order/5196695273621"
O1107 = "gid://shopify/Order/5196695273700"


def examples() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]


def _ret(
    gid: str,
    status: str,
    lines: list[tuple[int, int]],
    tracking: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "id": gid,
        "status": status,
        "lines": [{"lineItemId": f"gid://shopify/LineItem/{n}", "quantity": q} for n, q in lines],
        "reverseFulfillmentOrders": [
            {"reverseDeliveries": [{"trackingNumber": t} for t in (tracking or [])]}
        ],
    }


def demo_state(
    returns_1106: list[dict[str, Any]],
    returns_1107: list[dict[str, Any]],
    tags_1106: list[str],
    note_1106: str | None,
    tags_1107: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "domain": SHOP,
        "orders": [
            {
                "id": O1106,
                "name": "#1106",
                "tags": tags_1106,
                "note": note_1106,
                "returns": [r["id"] for r in returns_1106],
            },
            {
                "id": O1107,
                "name": "#1107",
                "tags": tags_1107 or [],
                "note": None,
                "returns": [r["id"] for r in returns_1107],
            },
        ],
        "returns": returns_1106 + returns_1107,
    }


GOOD_1106 = _ret(
    "gid://shopify/Return/1", "CLOSED", [(12695210000533, 1), (12695210000534, 2)], ["3SSCLD123456789"]
)
GOOD_1107 = _ret("gid://shopify/Return/2", "CANCELED", [(12695210000600, 1)], ["JVGL0612345678"])
GOOD_NOTE = "Bedankt\n[R-100234] Graag maat M in plaats van L"


def test_examples_expectations() -> None:
    orders = expected_orders(examples())
    by_return = {r.return_id: r for o in orders.values() for r in o.returns}
    assert by_return["R-100234"].final == "completed"
    assert by_return["R-100234"].items == {12695210000533: 1, 12695210000534: 2}
    assert by_return["R-100234"].tracking == "3SSCLD123456789"
    assert by_return["R-100240"].final == "cancelled"
    # #1107 is named only by its name in the examples, so it is matched by name.
    assert {o.order_name for o in orders.values()} == {"1106", "1107"}


def test_correct_state_has_no_differences() -> None:
    state = demo_state([GOOD_1106], [GOOD_1107], ["Sendcloud Return: Exchange", "VIP"], GOOD_NOTE)
    assert compare(examples(), state) == []


def test_order_and_duplicates_of_events_do_not_change_the_expectation() -> None:
    events = examples() + examples()[:3]
    random.Random(7).shuffle(events)
    state = demo_state([GOOD_1106], [GOOD_1107], ["Sendcloud Return: Exchange"], GOOD_NOTE)
    assert compare(events, state) == []


def test_cancelled_return_may_be_absent_declined_or_canceled() -> None:
    for ret in ([], [_ret("gid://shopify/Return/2", "DECLINED", [(12695210000600, 1)])]):
        state = demo_state([GOOD_1106], ret, ["Sendcloud Return: Exchange"], GOOD_NOTE)
        assert compare(examples(), state) == []


def test_duplicate_return_is_reported() -> None:
    twin = dict(GOOD_1106, id="gid://shopify/Return/9")
    state = demo_state([GOOD_1106, twin], [GOOD_1107], ["Sendcloud Return: Exchange"], GOOD_NOTE)
    diffs = compare(examples(), state)
    assert len(diffs) == 1 and "DUPLICATE" in diffs[0]
    assert summarize(diffs) == {
        "differences": 1,
        "duplicate_returns": 1,
        "missing_returns": 0,
        "orders_wrong": 1,
    }


def test_wrong_status_missing_return_tags_tracking_and_note_are_reported() -> None:
    open_1106 = _ret(
        "gid://shopify/Return/1", "OPEN", [(12695210000533, 1), (12695210000534, 2)], ["3SSCLD123456789"]
    )
    diffs = compare(examples(), demo_state([open_1106], [GOOD_1107], [], GOOD_NOTE))
    assert any("status OPEN" in d for d in diffs)
    assert any("tag 'sendcloud return: exchange' missing" in d for d in diffs)

    diffs = compare(examples(), demo_state([], [GOOD_1107], ["Sendcloud Return: Exchange"], GOOD_NOTE))
    assert any("MISSING" in d for d in diffs)

    no_tracking = _ret("gid://shopify/Return/1", "CLOSED", [(12695210000533, 1), (12695210000534, 2)])
    diffs = compare(
        examples(), demo_state([no_tracking], [GOOD_1107], ["Sendcloud Return: Exchange"], GOOD_NOTE)
    )
    assert any("tracking []" in d for d in diffs)

    twice = GOOD_NOTE + "\n[R-100234] Graag maat M in plaats van L"
    diffs = compare(examples(), demo_state([GOOD_1106], [GOOD_1107], ["Sendcloud Return: Exchange"], twice))
    assert any("appears 2 times" in d for d in diffs)

    # The cancelled return's tag must be gone: no other live return of #1107 uses `refund`.
    diffs = compare(
        examples(),
        demo_state(
            [GOOD_1106],
            [GOOD_1107],
            ["Sendcloud Return: Exchange"],
            GOOD_NOTE,
            tags_1107=["Sendcloud Return: Money back"],
        ),
    )
    assert any("should not be there" in d for d in diffs)


def test_wrong_lines_are_reported() -> None:
    partial = _ret(
        "gid://shopify/Return/1", "CLOSED", [(12695210000533, 1), (12695210000534, 1)], ["3SSCLD123456789"]
    )
    diffs = compare(examples(), demo_state([partial], [GOOD_1107], ["Sendcloud Return: Exchange"], GOOD_NOTE))
    assert any("lines" in d for d in diffs)


def test_tag_kept_while_another_live_return_has_the_method() -> None:
    events = examples()
    second = copy.deepcopy(events[1])  # created, exchange, on #1106 with other items
    second["id"], second["return"]["id"] = "evt_x", "R-2"
    second["return"]["items"] = [
        {"line_item_id": "gid://shopify/LineItem/777", "quantity": 1, "reason_id": 1}
    ]
    cancel = copy.deepcopy(second)
    cancel["id"], cancel["type"] = "evt_y", "return.cancelled"
    orders = expected_orders(events + [second, cancel])
    order = next(o for o in orders.values() if o.order_name == "1106")
    required, forbidden = order.tag_expectation()
    # R-100234 (completed, exchange) keeps the tag although R-2 (exchange) was cancelled.
    assert "sendcloud return: exchange" in required
    assert "sendcloud return: money back" in forbidden
