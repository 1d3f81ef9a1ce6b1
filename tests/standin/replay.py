"""Replay the recorded Shopify captures against the stand-in and diff the answers.

Per capture file: the store state the recording had (orders, line items, fulfilments, tags) is
seeded from what the capture itself shows, then every case whose root fields the stand-in models
is sent in recorded order. Ids the stand-in generates (returns, lines, reverse logistics) differ
from Shopify's: the first time a recorded id meets ours at the same place in a response, the pair
is remembered and later requests are rewritten with our id. Timestamps and cursors are ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from standin import state as st
from standin.schema import SCHEMA_DIR
from standin.server import RunningStandin

CAPTURES = SCHEMA_DIR.parent / "captures"  # next to the schema the stand-in serves

QUERY_ROOTS = {
    "order",
    "orders",
    "node",
    "nodes",
    "return",
    "returnableFulfillments",
    "returnReasonDefinitions",
    "currentAppInstallation",
    "reverseDelivery",
    "reverseFulfillmentOrder",
}
MUTATION_ROOTS = {
    "returnRequest",
    "returnApproveRequest",
    "returnDeclineRequest",
    "returnCreate",
    "returnClose",
    "returnReopen",
    "returnCancel",
    "returnProcess",
    "removeFromReturn",
    "reverseDeliveryCreateWithShipping",
    "reverseDeliveryShippingUpdate",
    "tagsAdd",
    "tagsRemove",
    "orderUpdate",
}
GENERATED_KINDS = {
    "Return",
    "ReturnLineItem",
    "ReverseFulfillmentOrder",
    "ReverseFulfillmentOrderLineItem",
    "ReverseDelivery",
    "ReverseDeliveryLineItem",
}
# Keys not compared: timestamps and cursors (ids and times are Shopify's own), and fields the
# stand-in deliberately does not model (money, inventory dispositions, fulfilment orders).
IGNORED_KEYS = {
    "createdAt",
    "updatedAt",
    "requestApprovedAt",
    "startCursor",
    "endCursor",
    "cursor",
    "processedAt",
    "dispositions",
    "fulfillmentOrders",
    "displayFinancialStatus",
    "totalPriceSet",
    "currentTotalPriceSet",
    "totalRefundedSet",
    "refunds",
    "returnShippingFees",
    "variant",
    "location",
    "email",
    "customer",
    "displayName",
    "originalUnitPriceSet",
    "taxLines",
    "discountedUnitPriceSet",
    "amountSet",
    "priceSet",
}
# Node types the stand-in does not model: reads of them are not replayed.
UNMODELLED_TYPES = {
    "FulfillmentOrder",
    "FulfillmentHold",
    "FulfillmentOrderLineItem",
    "FulfillmentEvent",
    "Location",
}
TIMESTAMP_KEYS = {"closedAt"}  # compared for null-ness only

# Cases known not to replay, with the reason (also listed in standin/README.md).
_READ_AFTER_WRITE = "2026-04--fulfillment-return-node-read-after-write.json::nodeReads."
KNOWN_UNREPLAYABLE: dict[str, str] = {
    _READ_AFTER_WRITE + "returnableFulfillmentNodeRead": (
        "recorded before the return was requested although filed after it; no timeline"
    ),
    _READ_AFTER_WRITE + "returnClosedNodeRead": (
        "recorded between returnClose and returnReopen although filed after both; no timeline"
    ),
    _READ_AFTER_WRITE + "fulfillmentNodeRead": (
        "reads fulfilment tracking info and fulfilment events, which are not modelled"
    ),
    "2026-04--orderUpdate-input-validation.json::mutation": (
        "the same request also validates a shipping address (province/zip rules); "
        "the stand-in does not model addresses"
    ),
}


@dataclass
class Case:
    file: str
    path: str
    query: str | None
    variables: dict[str, Any]
    status: int
    payload: Any
    roots: list[str] = field(default_factory=list)
    operation: str = "query"

    @property
    def case_id(self) -> str:
        return f"{self.file}::{self.path.lstrip('.')}"


_ROOT_RE = re.compile(r"^\s*(?:(\w+)\s*:\s*)?(\w+)")


def _root_fields(query: str) -> tuple[str, list[str]]:
    """Operation type and root field names of a document (first operation), by parsing."""
    from graphql import FieldNode, OperationDefinitionNode, parse

    doc = parse(query)
    op = next(d for d in doc.definitions if isinstance(d, OperationDefinitionNode))
    return op.operation.value, [s.name.value for s in op.selection_set.selections if isinstance(s, FieldNode)]


def _walk_cases(obj: Any, path: str, out: list[tuple[str, dict[str, Any]]]) -> None:
    if isinstance(obj, dict):
        if "response" in obj and ("query" in obj or "variables" in obj or "request" in obj):
            out.append((path, obj))
            return
        for key, value in obj.items():
            _walk_cases(value, f"{path}.{key}", out)
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _walk_cases(value, f"{path}[{i}]", out)


def _selection(value: Any) -> str:
    """A selection set that asks for exactly the keys a recorded response shows."""
    if isinstance(value, list):
        merged: dict[str, Any] = {}
        for item in value:
            if isinstance(item, dict):
                for k, v in item.items():
                    merged.setdefault(k, v)
        return _selection(merged) if merged else ""
    if not isinstance(value, dict):
        return ""
    parts = []
    for key, sub in value.items():
        if key in ("userErrors",):
            parts.append("userErrors { field message code }")
            continue
        inner = _selection(sub)
        if isinstance(sub, dict | list) and not inner:
            inner = "id" if key != "userErrors" else ""
            if isinstance(sub, list) and not sub:
                inner = "id"
        parts.append(f"{key} {{ {inner} }}" if inner or isinstance(sub, dict | list) else key)
    return " ".join(parts)


SYNTH_ARGS = {
    "returnRequest": ("input", "ReturnRequestInput!"),
    "returnCreate": ("returnInput", "ReturnInput!"),
}


def _synthesize(payload: dict[str, Any], variables: dict[str, Any]) -> str | None:
    data = payload.get("data") or {}
    if len(data) != 1:
        return None
    root, value = next(iter(data.items()))
    if root not in SYNTH_ARGS:
        return None
    arg, arg_type = SYNTH_ARGS[root]
    body = _selection(value).replace("return {  }", "return { id }")
    if "return" not in (value or {}) or value.get("return") is None:
        body = "return { id } userErrors { field message code }"
    return f"mutation Synth(${arg}: {arg_type}) {{ {root}({arg}: ${arg}) {{ {body} }} }}"


def load_cases(path: Path) -> tuple[dict[str, Any], list[Case]]:
    capture = json.loads(path.read_text())
    found: list[tuple[str, dict[str, Any]]] = []
    _walk_cases(capture, "", found)
    # The orderUpdate capture keeps its document and variables at the top level.
    if "document" in capture and isinstance(capture.get("mutation"), dict):
        capture["mutation"].setdefault("query", capture["document"])
        capture["mutation"].setdefault("variables", capture.get("variables"))
        found = [(p, c) for p, c in found if p != ".mutation"] + [(".mutation", capture["mutation"])]
    cases: list[Case] = []
    for case_path, raw in found:
        if case_path.startswith(".upstreamCalls"):
            continue  # reads a recording proxy made; used only as pre-state for tags
        request = raw.get("request") if isinstance(raw.get("request"), dict) else {}
        query = raw.get("query") or request.get("query")
        variables = raw.get("variables") or request.get("variables") or {}
        response = raw["response"]
        if isinstance(response, dict) and "payload" in response:
            status, payload = response.get("status", 200), response["payload"]
        else:
            status, payload = raw.get("status", 200) or 200, response
        if query is None and isinstance(payload, dict):
            query = _synthesize(payload, variables)
        case = Case(path.name, case_path, query, variables, status, payload)
        if query:
            case.operation, case.roots = _root_fields(query)
        cases.append(case)
    return capture, cases


def unmodelled_reason(case: Case) -> str | None:
    if case.query is None:
        return "no request document recorded for this case"
    allowed = MUTATION_ROOTS if case.operation == "mutation" else QUERY_ROOTS
    missing = [r for r in case.roots if r not in allowed]
    if missing:
        return f"root field(s) not modelled by the stand-in: {', '.join(missing)} (setup/other API)"
    if case.roots and case.roots[0] in ("tagsAdd", "tagsRemove"):
        kind = (st.parse_gid(case.variables.get("id")) or ("?", 0))[0]
        data = (case.payload.get("data") or {}).get(case.roots[0]) or {}
        if kind not in ("Order", "?") and data.get("node") is not None:
            return f"tags on {kind}: only orders are modelled"
    typenames = {d.get("__typename") for d in _iter_dicts(case.payload)}
    if typenames & UNMODELLED_TYPES:
        return f"reads node types not modelled: {', '.join(sorted(typenames & UNMODELLED_TYPES))}"
    return KNOWN_UNREPLAYABLE.get(case.case_id)


# --- Seeding from what the capture shows ------------------------------------------------------


def _iter_dicts(obj: Any) -> Any:
    if isinstance(obj, dict):
        yield obj
        for value in obj.values():
            yield from _iter_dicts(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _iter_dicts(value)


def seed_from_capture(
    standin: RunningStandin, shop: st.Shop, capture: dict[str, Any], cases: list[Case]
) -> None:
    store = standin.store
    orders: dict[int, dict[str, Any]] = {}
    line_owner: dict[int, int] = {}
    titles: dict[int, str | None] = {}
    fulfillments: dict[int, dict[int, tuple[int, int]]] = {}  # ful -> fli -> (line, qty)
    tag_mutation_ids = set()
    for case in cases:
        if case.roots[:1] and case.roots[0] in ("tagsAdd", "tagsRemove"):
            tag_mutation_ids.add(id(case.payload))
    for case in cases:
        in_tag_mutation = id(case.payload) in tag_mutation_ids
        for d in _iter_dicts(case.payload):
            parsed = st.parse_gid(d.get("id"))
            if not parsed:
                continue
            kind, num = parsed
            if kind == "Order" and "name" in d:
                spec = orders.setdefault(num, {"name": d["name"], "lines": {}, "tags": None})
                if "tags" in d and spec["tags"] is None and not in_tag_mutation:
                    spec["tags"] = d["tags"]
                for li in (d.get("lineItems") or {}).get("nodes") or []:
                    li_num = st.parse_gid(li["id"])[1]
                    spec["lines"][li_num] = (li.get("title"), li.get("quantity"))
                    line_owner[li_num] = num
                for ful in d.get("fulfillments") or []:
                    for fli in (ful.get("fulfillmentLineItems") or {}).get("nodes") or []:
                        li_num = st.parse_gid(fli["lineItem"]["id"])[1]
                        line_owner.setdefault(li_num, num)
                        titles.setdefault(li_num, fli["lineItem"].get("title"))
            if kind == "Fulfillment" and "fulfillmentLineItems" in d:
                entry = fulfillments.setdefault(num, {})
                for fli in (d["fulfillmentLineItems"] or {}).get("nodes") or []:
                    titles.setdefault(st.parse_gid(fli["lineItem"]["id"])[1], fli["lineItem"].get("title"))
                    entry[st.parse_gid(fli["id"])[1]] = (
                        st.parse_gid(fli["lineItem"]["id"])[1],
                        fli["quantity"],
                    )
    for order_num, spec in orders.items():
        lines = dict(spec["lines"])
        for entry in fulfillments.values():
            for li_num, _qty in entry.values():
                if line_owner.get(li_num) == order_num and li_num not in lines:
                    lines[li_num] = (None, 0)
        # A line item seen only through fulfilments gets the fulfilled quantity.
        for li_num, (title, qty) in list(lines.items()):
            if not qty:
                qty = sum(q for e in fulfillments.values() for ln, q in e.values() if ln == li_num)
                lines[li_num] = (title, qty or 1)
            if not lines[li_num][0]:
                lines[li_num] = (titles.get(li_num), lines[li_num][1])
        store.create_order(
            shop,
            spec["name"],
            [{"id": n, "title": t, "quantity": q} for n, (t, q) in lines.items()],
            order_id=order_num,
            fulfilled=False,
            tags=spec["tags"] or [],
        )
    for ful_num, entry in fulfillments.items():
        owners = {line_owner.get(li) for li, _ in entry.values()}
        order = shop.orders.get(next(iter(owners))) if len(owners) == 1 else None
        if order is None:
            continue
        store.fulfill(
            shop,
            order,
            [{"id": li, "quantity": q, "fulfillment_line_item_id": fli} for fli, (li, q) in entry.items()],
            fulfillment_id=ful_num,
        )


def upstream_tag_reads(capture: dict[str, Any]) -> dict[str, list[list[str]]]:
    """Recorded pre-mutation reads of each order's tags, in order (the recording proxy read the
    order before each tags mutation)."""
    reads: dict[str, list[list[str]]] = {}
    for call in capture.get("upstreamCalls") or []:
        body = (call.get("response") or {}).get("body") or {}
        order = (body.get("data") or {}).get("order")
        if isinstance(order, dict) and "tags" in order and "lineItems" not in order:
            reads.setdefault(order["id"], []).append(order["tags"])
    return reads


# --- Comparison -------------------------------------------------------------------------------


class Replayer:
    def __init__(self, standin: RunningStandin, shop: str, version: str) -> None:
        self.url = standin.graphql_url(shop, version)
        self.session = requests.Session()
        self.token = "replay-token"
        self.ids: dict[str, str] = {}

    def rewrite(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.ids.get(value, value)
        if isinstance(value, list):
            return [self.rewrite(v) for v in value]
        if isinstance(value, dict):
            return {k: self.rewrite(v) for k, v in value.items()}
        return value

    def send(self, case: Case) -> tuple[int, Any]:
        response = self.session.post(
            self.url,
            json={"query": case.query, "variables": self.rewrite(case.variables)},
            headers={"X-Shopify-Access-Token": self.token},
            timeout=30,
        )
        return response.status_code, response.json()

    def compare(self, expected: Any, actual: Any, path: str, diffs: list[str]) -> None:
        if isinstance(expected, dict) and isinstance(actual, dict):
            for key, exp in expected.items():
                if key in IGNORED_KEYS:
                    continue
                if key not in actual:
                    diffs.append(f"{path}.{key}: missing")
                    continue
                if key in TIMESTAMP_KEYS:
                    if (exp is None) != (actual[key] is None):
                        diffs.append(f"{path}.{key}: {exp!r} vs {actual[key]!r}")
                    continue
                self.compare(exp, actual[key], f"{path}.{key}", diffs)
            return
        if isinstance(expected, list) and isinstance(actual, list):
            if len(expected) != len(actual):
                diffs.append(
                    f"{path}: {len(expected)} items vs {len(actual)}: "
                    f"{json.dumps(expected)[:300]} vs {json.dumps(actual)[:300]}"
                )
                return
            for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
                self.compare(e, a, f"{path}[{i}]", diffs)
            return
        exp_gid, act_gid = st.parse_gid(expected), st.parse_gid(actual)
        if exp_gid and act_gid and exp_gid[0] == act_gid[0]:
            known = self.ids.get(expected)
            if known is None and expected != actual:
                if exp_gid[0] in GENERATED_KINDS:
                    self.ids[expected] = actual
                    return
            elif known is None or known == actual:
                return
        if expected != actual:
            diffs.append(f"{path}: expected {expected!r}, got {actual!r}")


def error_codes(payload: Any) -> list[str]:
    if not isinstance(payload, dict) or not isinstance(payload.get("errors"), list):
        return []
    return sorted(str((e.get("extensions") or {}).get("code") or e.get("message")) for e in payload["errors"])


def order_cases(cases: list[Case]) -> list[Case]:
    """Recorded files are not always in time order: a case that uses an id first returned by a
    later case runs right after that case."""
    produced: dict[str, int] = {}
    for i, case in enumerate(cases):
        for d in _iter_dicts(case.payload):
            gid_value = d.get("id")
            parsed = st.parse_gid(gid_value)
            if parsed and parsed[0] in GENERATED_KINDS:
                produced.setdefault(gid_value, i)
    deferred: dict[int, list[Case]] = {}
    ordered: list[Case] = []
    for i, case in enumerate(cases):
        refs = [v for v in re.findall(r"gid://shopify/\w+/\d+", json.dumps(case.variables))]
        after = max((produced.get(r, -1) for r in refs), default=-1)
        if after > i:
            deferred.setdefault(after, []).append(case)
            continue
        ordered.append(case)
        ordered.extend(deferred.pop(i, []))
    return ordered


def replay_file(standin: RunningStandin, path: Path) -> dict[str, tuple[str | None, list[str]]]:
    """Replay one capture file. Returns case id -> (skip reason or None, list of differences)."""
    capture, cases = load_cases(path)
    version = capture.get("apiVersion") or "2026-04"
    domain = f"replay-{path.stem.lower()}.myshopify.com"
    # The recorded cost model: the 1,000-point limit then refuses what Shopify refused, no more.
    shop = standin.store.create_shop(
        domain, "replay-token", bucket_size=10**9, restore_rate=10**6, cost_model="recorded"
    )
    seed_from_capture(standin, shop, capture, cases)
    tag_reads = upstream_tag_reads(capture)
    replayer = Replayer(standin, domain, version)
    results: dict[str, tuple[str | None, list[str]]] = {}
    for case in order_cases(cases):
        reason = unmodelled_reason(case)
        if reason:
            results[case.case_id] = (reason, [])
            continue
        if case.roots[0] in ("tagsAdd", "tagsRemove"):
            reads = tag_reads.get(case.variables.get("id"), [])
            order = shop.lookup(case.variables.get("id"), "Order")
            if reads and order is not None:
                order.tags = st.normalize_tags(reads.pop(0))
        status, payload = replayer.send(case)
        diffs: list[str] = []
        if status != case.status:
            diffs.append(f"HTTP status {case.status} expected, got {status}")
        if error_codes(case.payload) != error_codes(payload):
            diffs.append(
                f"errors: expected {error_codes(case.payload)}, "
                f"got {error_codes(payload)}: {json.dumps(payload)[:400]}"
            )
        replayer.compare((case.payload or {}).get("data"), (payload or {}).get("data"), "data", diffs)
        results[case.case_id] = (None, diffs)
    return results


def all_case_ids() -> list[str]:
    ids = []
    for path in sorted(CAPTURES.glob("*.json")):
        ids.extend(c.case_id for c in load_cases(path)[1])
    return ids
