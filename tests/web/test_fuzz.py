"""Fuzzing the ingest endpoint: schemathesis from /openapi.json, and hypothesis-built bodies,
headers and signatures judged by an oracle written here, independently of web/schemas.py.

Properties: never a 5xx (Postgres is up, so not even a 503); nothing the oracle rejects is ever
accepted; everything it accepts is accepted (202, and 200 on redelivery).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.web.conftest import SHOP, encode, example, post_signed, secret
from web.app import create_app
from web.signatures import sign
from workers.store import shops

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
_ids = itertools.count()

# --- the oracle: INGEST.md's body rules, written out plainly ---------------------------------

ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TYPES = {"return.requested", "return.created", "return.completed", "return.cancelled"}
ORIGINS = {
    "return_portal",
    "return_portal_request",
    "return_portal_no_outbound",
    "manual_order_return",
    "label_in_the_box",
}
METHODS = {"exchange", "refund", "store_credit"}
INT32 = 2**31 - 1


def one_of(v: Any, allowed: set[str]) -> bool:
    return type(v) is str and v in allowed


def is_int(v: Any) -> bool:
    return type(v) is int


def is_text(v: Any, lo: int, hi: int) -> bool:
    return type(v) is str and lo <= len(v) <= hi


def optional(obj: dict, key: str, check: Any) -> bool:
    return key not in obj or obj[key] is None or check(obj[key])


def shopify_id(v: Any, kind: str) -> bool:
    if is_int(v):
        return 1 <= v < 2**63
    if type(v) is not str:
        return False
    m = re.fullmatch(rf"(?:gid://shopify/{kind}/)?([0-9]{{1,19}})", v)
    return bool(m) and 1 <= int(m.group(1)) < 2**63


def rfc3339(v: Any) -> bool:
    if type(v) is not str:
        return False
    m = re.fullmatch(
        r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]{1,9})?(Z|z|[+-][0-9]{2}:[0-9]{2})",
        v,
    )
    if not m:
        return False
    try:
        wall = datetime.strptime(m.group(1) + " " + m.group(2), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return False
    offset = m.group(4)
    if offset in ("Z", "z"):
        minutes = 0
    else:
        if int(offset[4:6]) >= 60:
            return False
        minutes = (int(offset[1:3]) * 60 + int(offset[4:6])) * (1 if offset[0] == "+" else -1)
    # INGEST terms chosen by the hardening issue: offsets within ±14:00, instants (UTC) from
    # 2000-01-01 to seven days from now.
    if abs(minutes) > 14 * 60:
        return False
    if not 1900 <= wall.year <= 9000:  # far outside the window; keep the arithmetic below in range
        return False
    utc = wall - timedelta(minutes=minutes)
    return datetime(2000, 1, 1) <= utc <= datetime.now(UTC).replace(tzinfo=None) + timedelta(days=7)


_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HTTP_URL = (
    rf"https?://([^\s/?#@]*@)?(localhost|({_LABEL}\.)+[a-z0-9-]{{2,}}\.?|{_LABEL}\.?)(:\d+)?([/?]\S*)?"
)


def http_url(v: Any) -> bool:
    return (
        type(v) is str
        and len(v) <= 2048
        # Scheme and host are case-insensitive (RFC 3986 §3.1, §3.2.2): "https://Tracking.example"
        # is a valid tracking URL. The host is a DNS name (a single label such as an intranet host
        # is one too) or localhost, optionally after user info and before a port; the rest is any
        # path or query without whitespace.
        and bool(re.fullmatch(_HTTP_URL, v, flags=re.IGNORECASE))
    )


def valid_item(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and shopify_id(item.get("line_item_id"), "LineItem")
        and is_int(item.get("quantity"))
        and 1 <= item["quantity"] <= INT32
        and is_int(item.get("reason_id"))
        and 1 <= item["reason_id"] <= INT32
        and optional(item, "reason", lambda v: is_text(v, 0, 255))
        and optional(item, "customer_note", lambda v: is_text(v, 0, 300))
    )


def valid_event(body: Any) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get("return"), dict):
        return False
    ret = body["return"]
    order = ret.get("order")
    tracking = ret.get("tracking")
    return (
        type(body.get("id")) is str
        and bool(ID_RE.fullmatch(body["id"]))
        and one_of(body.get("type"), TYPES)
        and rfc3339(body.get("occurred_at"))
        and body.get("shop") == SHOP  # the format, and known to the system
        and type(ret.get("id")) is str
        and bool(ID_RE.fullmatch(ret["id"]))
        and isinstance(order, dict)
        and optional(order, "id", lambda v: shopify_id(v, "Order"))
        and optional(order, "name", lambda v: is_text(v, 1, 255))
        and (order.get("id") is not None or order.get("name") is not None)
        and one_of(ret.get("origin"), ORIGINS)
        and ("refund_method" not in ret or one_of(ret["refund_method"], METHODS))
        and (
            one_of(ret.get("refund_method"), METHODS)
            or body["type"] not in ("return.requested", "return.created")
        )
        and optional(ret, "exchange_note", lambda v: is_text(v, 0, 2000))
        and (
            tracking is None
            or (
                isinstance(tracking, dict)
                and is_text(tracking.get("number"), 1, 255)
                and optional(tracking, "url", http_url)
                and optional(tracking, "carrier", lambda v: is_text(v, 1, 255))
            )
        )
        and isinstance(ret.get("items"), list)
        and 1 <= len(ret["items"]) <= 250
        and all(valid_item(i) for i in ret["items"])
    )


def has_unstorable_text(value: Any) -> bool:
    """NUL cannot go into jsonb: the contract's 400 (not a storable JSON object)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_unstorable_text(k) or has_unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_unstorable_text(v) for v in value)
    return False


# --- generators: each field valid or broken, judged afterwards only by the oracle ------------

MISSING = object()
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


ids = st.from_regex(r"[A-Za-z0-9._:-]{1,100}", fullmatch=True)
bad_ids = st.sampled_from(["", "R 1", "evt\n", "e" * 129, "évt", "a/b"])
# Inside the window (INGEST terms of the hardening issue), up to its edges; outside, just past them.
_SOON = (datetime.now(UTC) + timedelta(days=5)).replace(tzinfo=None)
timestamps = st.one_of(
    st.tuples(
        st.datetimes(min_value=datetime(2000, 1, 2), max_value=_SOON),
        st.sampled_from(("Z", "z", "+05:30", "-11:00", "+14:00", "-14:00")),
        st.booleans(),
    ).map(lambda t: t[0].strftime("%Y-%m-%dT%H:%M:%S" + (".%f" if t[2] else "")) + t[1]),
    st.sampled_from(["2000-01-01T00:00:00Z", "2000-01-01T00:00:00-01:00", "2026-11-29T10:00:00+14:00"]),
)
edge_timestamps = st.sampled_from(
    [
        "1999-12-31T23:59:59Z",
        "2000-01-01T00:00:00+01:00",
        "2026-11-29T10:00:00+14:01",
        "2026-11-29T10:00:00-14:30",
        "2026-11-29T10:00:00+16:00",
        "2026-11-29T10:00:00-18:00",
        "0001-01-01T00:00:00+01:00",
        "0001-01-01T00:00:00-14:00",
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-14:00",
        (datetime.now(UTC) + timedelta(days=8)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    ]
)
bad_timestamps = st.datetimes().flatmap(
    lambda dt: st.sampled_from(
        [
            dt.strftime("%Y-%m-%dT%H:%M:%S"),
            dt.strftime("%d/%m/%Y %H:%M"),
            dt.strftime("%Y-%m-%d"),
            "2026-02-30T10:00:00Z",
            "2026-11-29T24:00:00Z",
            "2026-11-29T10:00:00+25:00",
        ]
    )
)
order_ids = st.one_of(
    st.integers(min_value=1, max_value=2**63 - 1).map(lambda n: f"gid://shopify/Order/{n}"),
    st.integers(min_value=1, max_value=2**63 - 1),
    st.integers(min_value=1, max_value=2**63 - 1).map(str),
)
bad_order_ids = st.one_of(
    st.sampled_from(
        ["gid://shopify/LineItem/5", "gid://shopify/Order/", "5\n", "0", "gid://shopify/Order/0"]
    ),
    st.integers(min_value=2**63, max_value=2**70),
    st.integers(max_value=0),
)
line_ids = st.one_of(
    st.integers(min_value=1, max_value=2**63 - 1).map(lambda n: f"gid://shopify/LineItem/{n}"),
    st.integers(min_value=1, max_value=2**63 - 1),
    st.integers(min_value=1, max_value=10**18).map(str),
)
bad_line_ids = st.sampled_from(["gid://shopify/Order/5", "x", "", -1, 0, 2**64])
counts = st.integers(min_value=1, max_value=INT32)
bad_counts = st.one_of(
    st.integers(max_value=0), st.integers(min_value=INT32 + 1), st.sampled_from([1.0, 1.5, True, "2"])
)
urls = st.sampled_from(
    ["https://t.example.com/3S", "http://track.example/x/y", "https://a.bc/c_d.e", "http://localhost/x"]
)
bad_urls = st.sampled_from(["ftp://t.example/", "t.example", "javascript:alert(1)", "https://", ""])


def text(lo: int, hi: int) -> st.SearchStrategy:
    return st.text(min_size=lo, max_size=min(hi, 40)) | st.text(min_size=hi, max_size=hi)


def too_long(hi: int) -> st.SearchStrategy:
    return st.text(min_size=hi + 1, max_size=hi + 3)


class Builder:
    """Draws each field valid, broken (wrong value or any JSON junk) or absent."""

    def __init__(self, draw: st.DrawFn, valid: bool) -> None:
        self.draw, self.valid = draw, valid

    def put(
        self,
        obj: dict,
        key: str,
        ok: st.SearchStrategy,
        bad: st.SearchStrategy | None = None,
        optional: bool = False,
        nullable: bool = False,
    ) -> None:
        if self.valid:
            options = [ok] + ([st.just(MISSING)] if optional else []) + ([st.none()] if nullable else [])
        else:
            options = [ok, ok, junk, st.just(MISSING)] + ([bad] if bad is not None else [])
        value = self.draw(st.one_of(*options))
        if value is not MISSING:
            obj[key] = value

    def unknown(self, obj: dict, prefix: str = "") -> None:
        if self.draw(st.booleans()):
            key = prefix + self.draw(st.text(max_size=6))
            if self.valid and key in obj:
                return
            obj[key] = self.draw(json_values)


@st.composite
def items(draw: st.DrawFn, valid: bool) -> dict:
    b, item = Builder(draw, valid), {}
    b.put(item, "line_item_id", line_ids, bad_line_ids)
    b.put(item, "quantity", counts, bad_counts)
    b.put(item, "reason_id", counts, bad_counts)
    b.put(item, "reason", text(0, 255), too_long(255), optional=True, nullable=True)
    b.put(item, "customer_note", text(0, 300), too_long(300), optional=True, nullable=True)
    b.unknown(item, "" if not valid else "x_")
    return item


@st.composite
def events(draw: st.DrawFn, valid: bool = False) -> dict:
    b, body, ret, order, tracking = Builder(draw, valid), {}, {}, {}, {}
    b.put(body, "id", ids, bad_ids)
    etype = draw(st.sampled_from(sorted(TYPES)))
    b.put(body, "type", st.just(etype), st.sampled_from(["return.updated", "created", ""]))
    b.put(body, "occurred_at", timestamps, bad_timestamps | edge_timestamps)
    b.put(
        body,
        "shop",
        st.just(SHOP),
        st.sampled_from(["other.myshopify.com", "ACME.myshopify.com", SHOP + "\n"]),
    )
    b.put(ret, "id", ids, bad_ids)
    b.put(order, "id", order_ids, bad_order_ids, optional=True, nullable=True)
    b.put(
        order,
        "name",
        text(1, 255) | st.just("#1106"),
        st.just("") | too_long(255),
        optional=True,
        nullable=True,
    )
    if valid and order.get("id") is None and order.get("name") is None:
        order["name"] = "#1106"
    b.put(ret, "order", st.just(order))
    b.put(ret, "origin", st.sampled_from(sorted(ORIGINS)), st.just("email"))
    needs_method = etype in ("return.requested", "return.created")
    b.put(ret, "refund_method", st.sampled_from(sorted(METHODS)), st.just("cash"), optional=not needs_method)
    b.put(ret, "exchange_note", text(0, 2000), too_long(2000), optional=True, nullable=True)
    vb = Builder(draw, valid)
    vb.put(tracking, "number", text(1, 255), st.just("") | too_long(255))
    vb.put(tracking, "url", urls, bad_urls, optional=True, nullable=True)
    vb.put(tracking, "carrier", text(1, 255), st.just(""), optional=True, nullable=True)
    b.put(ret, "tracking", st.just(tracking), optional=True, nullable=True)
    b.put(
        ret,
        "items",
        st.lists(items(valid), min_size=1, max_size=4),
        st.just([]) | st.lists(items(True), min_size=251, max_size=251),
    )
    b.unknown(ret, "x_")
    body["return"] = ret
    b.unknown(body, "x_")
    # Unique ids, so a valid event is never a 409 against an earlier, different example.
    if type(body.get("id")) is str and ID_RE.fullmatch(body["id"]):
        body["id"] = f"{body['id'][:100]}-{next(_ids)}"
    return body


@st.composite
def valid_events(draw: st.DrawFn) -> dict:
    body = draw(events(valid=True))
    # The generator aims at valid events; the oracle has the last word (it should rarely differ).
    assume(valid_event(body) and not has_unstorable_text(body))
    return body


@pytest.fixture(scope="module")
def fuzz_app(database: str) -> Flask:
    return create_app()


def expected_for(body: Any) -> set[int]:
    if has_unstorable_text(body):
        return {400}
    return {202, 200} if valid_event(body) else {422}


# --- hypothesis -----------------------------------------------------------------------------


@FUZZ
@given(body=events())
def test_generated_bodies_are_accepted_exactly_when_the_oracle_says_valid(
    fuzz_app: Flask, shop: shops.Shop, body: dict
) -> None:
    body_id = body.get("id")
    # Header values travel as bytes; only visible ASCII survives as the same text on both sides.
    sendable = type(body_id) is str and re.fullmatch(r"[!-~]+", body_id) is not None
    header_id = body_id if sendable else "x"
    response = post_signed(fuzz_app.test_client(), body, event_id=header_id)
    expected = expected_for(body)
    if type(body_id) is str and body_id != header_id and 400 not in expected:
        expected = {401}  # header and body ids differ (INGEST.md: the header must equal the body id)
    assert response.status_code in expected, (response.status_code, response.json)


@settings(FUZZ, max_examples=60)
@given(body=valid_events())
def test_every_valid_generated_event_is_accepted_then_a_duplicate(
    fuzz_app: Flask, shop: shops.Shop, body: dict
) -> None:
    client = fuzz_app.test_client()
    first = post_signed(client, body)
    assert first.status_code == 202, first.json
    again = post_signed(client, body)
    assert (again.status_code, again.json) == (200, {"id": body["id"], "status": "duplicate"})
    token = {"Authorization": "Bearer " + __import__("config").get_settings().status_api_token}
    status = client.get(f"/v1/returns/{SHOP}/{body['return']['id']}", headers=token)
    assert status.status_code == 200
    assert {"id": body["id"], "type": body["type"], "status": "accepted"} in status.json["events"]


@FUZZ
@given(
    raw=st.binary(max_size=512) | st.text(max_size=200).map(str.encode),
    event_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20),
)
def test_arbitrary_signed_bytes_never_5xx_and_never_2xx(
    fuzz_app: Flask, shop: shops.Shop, raw: bytes, event_id: str
) -> None:
    response = post_signed(fuzz_app.test_client(), raw, event_id=event_id)
    assert response.status_code in {400, 401, 422}


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=80)


@FUZZ
@given(wid=header_text, wts=header_text | st.integers(-(10**12), 10**13).map(str), wsig=header_text)
def test_arbitrary_signature_headers_are_401(
    fuzz_app: Flask, shop: shops.Shop, wid: str, wts: str, wsig: str
) -> None:
    headers = {"webhook-id": wid, "webhook-timestamp": wts, "webhook-signature": wsig}
    response = fuzz_app.test_client().post(
        "/v1/return-events", data=encode(example("01")), headers=headers, content_type="application/json"
    )
    assert response.status_code == 401


@FUZZ
@given(
    position=st.integers(min_value=0),
    flip=st.integers(min_value=1, max_value=255),
    skew=st.sampled_from([0, -240, 240, -360, 360, -(10**6)]),
)
def test_replayed_tampered_and_resigned_bodies(
    fuzz_app: Flask, shop: shops.Shop, position: int, flip: int, skew: int
) -> None:
    client = fuzz_app.test_client()
    body = dict(example("02"), id=f"evt_replay_{next(_ids)}")
    raw = encode(body)
    headers = sign(raw, body["id"], secret(), int(time.time()) + skew)
    fresh = abs(skew) < 300  # margins of a minute either way: a loaded machine is slow, not wrong

    def send(data: bytes, hdrs: dict[str, str]) -> int:
        return client.post(
            "/v1/return-events", data=data, headers=hdrs, content_type="application/json"
        ).status_code

    assert send(raw, headers) == (202 if fresh else 401)
    assert send(raw, headers) == (200 if fresh else 401)  # a replay is a duplicate, never a new event
    tampered = bytearray(raw)
    tampered[position % len(raw)] ^= flip
    assert send(bytes(tampered), headers) == 401  # same headers, other bytes
    # Re-signed by someone holding the key: judged on content like any producer request.
    try:
        parsed = json.loads(bytes(tampered).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        parsed = None
    resigned = sign(bytes(tampered), body["id"], secret())
    status = send(bytes(tampered), resigned)
    assert status < 500
    if status in (200, 202):
        assert valid_event(parsed)
        assert parsed["id"] == body["id"] or status == 202


# --- schemathesis ---------------------------------------------------------------------------

schema = schemathesis.from_wsgi("/openapi.json", create_app())


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_as_generated(database: str, case: schemathesis.Case) -> None:
    """Requests as the schema describes them, mostly failing the signature: never a server error."""
    response = case.call_wsgi()
    assert response.status_code < 500, response.get_data(as_text=True)
    case.validate_response(
        response,
        checks=(
            schemathesis.checks.status_code_conformance,
            schemathesis.checks.content_type_conformance,
            schemathesis.checks.response_schema_conformance,
        ),
    )


@schema.include(method="POST").parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_bodies_signed(database: str, case: schemathesis.Case) -> None:
    """The schema's bodies (positive and negative), correctly signed, so validation is reached."""
    if not shops.find_shop(SHOP):
        shops.register_shop(SHOP, "t")
    raw = encode(case.body) if not isinstance(case.body, schemathesis.types.NotSet) else b""
    body_id = case.body.get("id") if isinstance(case.body, dict) else None
    event_id = body_id if isinstance(body_id, str) and body_id else "evt_schemathesis"
    response = case.app.test_client().post(
        "/v1/return-events", data=raw, headers=sign(raw, event_id, secret()), content_type="application/json"
    )
    assert response.status_code < 500, response.json
    if response.status_code == 202:
        assert valid_event(case.body)
    assert response.status_code in {200, 202, 400, 409, 422}
