"""What the Shopify stand-in must show once a set of return events has been applied.

This is an independent restatement of PRODUCT.md §2 and §4, written from the spec and not from the
workers' code (nothing here imports ``workers`` or ``tasks``): a second reading of the same rules
is what makes the chaos comparison worth something. Pure functions over plain dicts, so it can be
unit-tested without a running system.

Where the outcome depends on the order the system happened to process events in, the expectation
says so and accepts every legitimate outcome, rather than guessing one:
- a cancelled return may end DECLINED, CANCELED or never reach Shopify (cancelled before it was
  applied), and its exchange note may or may not have been appended before the cancel;
- a return with both ``completed`` and ``cancelled`` is a conflict: the first one applied wins.
What never depends on ordering, and is always checked: at most one Shopify return per platform
return (exactly one when it must exist), its lines, its final status, the tracking number on its
reverse delivery, the refund-method tags and the exchange note appearing at most once.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

# PRODUCT.md "Refund-method tags"; restated here on purpose (see module docstring).
TAG_LABELS: dict[str, dict[str, str]] = {
    "en": {
        "exchange": "Sendcloud Return: Exchange",
        "refund": "Sendcloud Return: Money back",
        "store_credit": "Sendcloud Return: Store credit",
    },
    "nl": {
        "exchange": "Sendcloud Retour: Omruiling",
        "refund": "Sendcloud Retour: Geld terug",
        "store_credit": "Sendcloud Retour: Winkeltegoed",
    },
}
TAG_PREFIXES = ("sendcloud return:", "sendcloud retour:")

STATES = ("requested", "created", "completed", "cancelled")
# Lifecycle rank: the system converges to the furthest state seen (PRODUCT.md §4).
RANK = {"requested": 1, "created": 2, "completed": 3, "cancelled": 3}

# Shopify Return.status a platform state must end in; None in a set means "no Shopify return".
ALLOWED_STATUS: dict[str, frozenset[str | None]] = {
    "requested": frozenset({"REQUESTED"}),
    "created": frozenset({"OPEN"}),
    "completed": frozenset({"CLOSED"}),
    "cancelled": frozenset({"DECLINED", "CANCELED", None}),
    "conflict": frozenset({"CLOSED", "DECLINED", "CANCELED", None}),
}


def gid_number(value: Any) -> int | None:
    """123, '123' or 'gid://shopify/Kind/123' -> 123 (the spec allows every form for ids)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).rsplit("/", 1)[-1].split("?", 1)[0]
    return int(text) if text.isdigit() else None


def normalize_name(name: str | None) -> str | None:
    return None if name is None else name.strip().lstrip("#").lower()


@dataclass
class ExpectedReturn:
    shop: str
    return_id: str
    seen: set[str] = field(default_factory=set)  # every state an event was received for
    items: dict[int, int] = field(default_factory=dict)  # line item number -> quantity
    refund_method: str | None = None
    tracking: str | None = None
    exchange_note: str | None = None
    event_ids: set[str] = field(default_factory=set)
    _snapshot_key: tuple[int, str] = (0, "")

    @property
    def final(self) -> str:
        """The furthest state, or 'conflict' when both terminal states arrived."""
        if {"completed", "cancelled"} <= self.seen:
            return "conflict"
        return max(self.seen, key=lambda s: RANK[s])

    @property
    def must_exist(self) -> bool:
        return self.final in ("requested", "created", "completed")

    @property
    def live(self) -> bool:
        """Carries its refund-method tag for good: it was created and not cancelled."""
        return self.final in ("created", "completed")


@dataclass
class ExpectedOrder:
    shop: str
    order_num: int | None
    order_name: str | None
    returns: list[ExpectedReturn] = field(default_factory=list)

    def tag_expectation(self, language: str = "en") -> tuple[set[str], set[str]]:
        """(tags that must be on the order, tags that must not be). Lower-cased, because
        Shopify tags are case-insensitive. A method is in neither set when its outcome
        depends on ordering or on a reading of 'live' the spec leaves open."""
        required: set[str] = set()
        forbidden: set[str] = set()
        for method, label in TAG_LABELS[language].items():
            rets = [r for r in self.returns if r.refund_method == method]
            if any(r.live for r in rets):
                required.add(label.lower())
                continue
            unsure = any(r.final == "conflict" for r in rets) or (
                any(r.final == "cancelled" for r in rets) and any(r.final == "requested" for r in rets)
            )
            if not unsure:
                forbidden.add(label.lower())
        return required, forbidden


def event_state(event: dict[str, Any]) -> str:
    kind = str(event["type"])
    state = kind.split(".", 1)[1] if kind.startswith("return.") else kind
    if state not in STATES:
        raise ValueError(f"unknown event type {kind!r}")
    return state


def order_key(shop: str, order: dict[str, Any]) -> tuple[str, str]:
    """Orders are keyed by their number when the event gives an id, else by their name."""
    num = gid_number(order.get("id"))
    if num is not None:
        return shop, f"id:{num}"
    return shop, f"name:{normalize_name(order.get('name'))}"


def expected_orders(events: list[dict[str, Any]]) -> dict[tuple[str, str], ExpectedOrder]:
    """Fold events (in any order, duplicates included) into the expected state per order."""
    returns: dict[tuple[str, str], ExpectedReturn] = {}
    orders: dict[tuple[str, str], ExpectedOrder] = {}
    for event in events:
        shop = str(event["shop"]).lower()
        ret_body = event["return"]
        state = event_state(event)
        key = order_key(shop, ret_body["order"])
        order = orders.get(key)
        if order is None:
            order = orders[key] = ExpectedOrder(
                shop, gid_number(ret_body["order"].get("id")), normalize_name(ret_body["order"].get("name"))
            )
        rkey = (shop, str(ret_body["id"]))
        ret = returns.get(rkey)
        if ret is None:
            ret = returns[rkey] = ExpectedReturn(shop, str(ret_body["id"]))
            order.returns.append(ret)
        ret.seen.add(state)
        ret.event_ids.add(str(event["id"]))
        # Each event is a full snapshot; the furthest (then latest) one describes the return.
        snap_key = (RANK[state], str(event.get("occurred_at", "")))
        if snap_key >= ret._snapshot_key:
            ret._snapshot_key = snap_key
            items: dict[int, int] = defaultdict(int)
            for item in ret_body["items"]:
                num = gid_number(item["line_item_id"])
                if num is None:
                    raise ValueError(f"line item id {item['line_item_id']!r} is not an id")
                items[num] += int(item["quantity"])
            ret.items = dict(items)
            ret.refund_method = ret_body.get("refund_method") or ret.refund_method
            tracking = ret_body.get("tracking") or {}
            ret.tracking = tracking.get("number") or ret.tracking
            ret.exchange_note = ret_body.get("exchange_note") or ret.exchange_note
    return orders


# --- comparison with the stand-in's state (standin.state.shop_view) ---


def _find_order(view: dict[str, Any], expected: ExpectedOrder) -> dict[str, Any] | None:
    for order in view.get("orders", []):
        if expected.order_num is not None and gid_number(order["id"]) == expected.order_num:
            return order
        if expected.order_num is None and normalize_name(order.get("name")) == expected.order_name:
            return order
    return None


def _return_lines(ret: dict[str, Any]) -> dict[int, int]:
    lines: dict[int, int] = defaultdict(int)
    for line in ret.get("lines", []):
        lines[gid_number(line["lineItemId"]) or 0] += int(line["quantity"])
    return dict(lines)


def _tracking_numbers(ret: dict[str, Any]) -> list[str]:
    return [
        d["trackingNumber"]
        for rfo in ret.get("reverseFulfillmentOrders", [])
        for d in rfo.get("reverseDeliveries", [])
        if d.get("trackingNumber")
    ]


def compare_order(expected: ExpectedOrder, view: dict[str, Any], language: str = "en") -> list[str]:
    """Differences between one expected order and the shop's stand-in state (empty: all good)."""
    label = f"{expected.shop} order {expected.order_num or expected.order_name}"
    order = _find_order(view, expected)
    if order is None:
        return [f"{label}: not on the stand-in"]
    diffs: list[str] = []
    by_id = {r["id"]: r for r in view.get("returns", [])}
    shopify_returns = [by_id[g] for g in order.get("returns", []) if g in by_id]

    # Attribute each Shopify return to the platform return whose items it touches. Returns of one
    # order use disjoint line items in generated runs, so the attribution is unambiguous.
    owner: dict[int, ExpectedReturn] = {}
    for ret in expected.returns:
        for num in ret.items:
            owner.setdefault(num, ret)
    matched: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for sret in shopify_returns:
        owners = {owner[n].return_id for n in _return_lines(sret) if n in owner}
        if len(owners) != 1:
            diffs.append(
                f"{label}: Shopify return {sret['id']} ({sret['status']}) matches "
                f"no single platform return (lines {_return_lines(sret)})"
            )
            continue
        matched[owners.pop()].append(sret)

    for ret in expected.returns:
        rlabel = f"{label} return {ret.return_id} ({ret.final})"
        found = matched.get(ret.return_id, [])
        if len(found) > 1:
            diffs.append(
                f"{rlabel}: DUPLICATE: {len(found)} Shopify returns {[(r['id'], r['status']) for r in found]}"
            )
        if not found:
            if ret.must_exist:
                diffs.append(f"{rlabel}: MISSING on Shopify")
            continue
        sret = found[0]
        status = sret["status"]
        if len(found) == 1 and status not in ALLOWED_STATUS[ret.final]:
            diffs.append(
                f"{rlabel}: status {status}, expected one of "
                f"{sorted(s for s in ALLOWED_STATUS[ret.final] if s)}"
            )
        if status in ("REQUESTED", "OPEN", "CLOSED") and _return_lines(sret) != ret.items:
            diffs.append(f"{rlabel}: lines {_return_lines(sret)} != expected {ret.items}")
        numbers = _tracking_numbers(sret)
        if ret.live and ret.tracking and numbers != [ret.tracking]:
            diffs.append(f"{rlabel}: tracking {numbers}, expected [{ret.tracking!r}]")
        elif ret.final == "requested" and numbers:
            diffs.append(f"{rlabel}: tracking {numbers} on a REQUESTED return")

    # Tags: only the refund-method tags are ours to check; the merchant's own tags are left alone.
    tags = {t.lower() for t in order.get("tags", [])}
    required, forbidden = expected.tag_expectation(language)
    for tag in sorted(required - tags):
        diffs.append(f"{label}: tag {tag!r} missing (tags {sorted(tags)})")
    for tag in sorted(forbidden & tags):
        diffs.append(f"{label}: tag {tag!r} should not be there")
    ours = {t for t in tags if t.startswith(TAG_PREFIXES)}
    known = {lbl.lower() for lbl in TAG_LABELS[language].values()}
    for tag in sorted(ours - known):
        diffs.append(f"{label}: unexpected refund tag {tag!r}")

    # Exchange note: appended once at `created`, so exactly once for live exchange returns, at
    # most once for cancelled ones, never for a return that is only requested.
    note = order.get("note") or ""
    for ret in expected.returns:
        if ret.refund_method != "exchange" or not ret.exchange_note:
            continue
        count = note.count(ret.exchange_note)
        if ret.live and count != 1:
            diffs.append(f"{label} return {ret.return_id}: exchange note appears {count} times, expected 1")
        elif ret.final == "requested" and count != 0:
            diffs.append(f"{label} return {ret.return_id}: exchange note on a requested return")
        elif count > 1:
            diffs.append(f"{label} return {ret.return_id}: exchange note appears {count} times")
    return diffs


def compare(
    expected: dict[tuple[str, str], ExpectedOrder] | list[dict[str, Any]],
    actual_state: dict[str, dict[str, Any]] | dict[str, Any],
    language: str = "en",
) -> list[str]:
    """Differences between the expected orders (or the raw events) and the stand-in's state.

    ``actual_state`` is either one shop's state (``StandinAdmin.state(domain)``, which has a
    ``domain`` key) or a mapping of shop domain to such a state."""
    if isinstance(expected, list):
        expected = expected_orders(expected)
    views: dict[str, dict[str, Any]]
    if "orders" in actual_state and "domain" in actual_state:
        views = {str(actual_state["domain"]).lower(): actual_state}
    else:
        views = {k.lower(): v for k, v in actual_state.items()}
    diffs: list[str] = []
    for key in sorted(expected):
        order = expected[key]
        view = views.get(order.shop)
        if view is None:
            diffs.append(f"{order.shop}: no stand-in state for the shop")
            continue
        diffs.extend(compare_order(order, view, language))
    return diffs


def summarize(diffs: list[str]) -> dict[str, int]:
    """Counts a report needs: duplicates, missing returns, orders with any difference."""
    # Every difference starts with "<shop> order <id>", then " return ..." or ": ...".
    orders = Counter(d.split(": ", 1)[0].split(" return ", 1)[0] for d in diffs)
    return {
        "differences": len(diffs),
        "duplicate_returns": sum(1 for d in diffs if "DUPLICATE" in d),
        "missing_returns": sum(1 for d in diffs if "MISSING" in d),
        "orders_wrong": len(orders),
    }
