"""POST /v1/return-events: every row of INGEST.md's response table, as the producer sees it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import (
    FOREIGN_SECRET,
    SHOP,
    all_examples,
    encode,
    example,
    mutated,
    post_signed,
    secret,
)
from workers.store import shops
from workers.store.db import transaction


def stored_events() -> list[dict[str, Any]]:
    with transaction() as cur:
        cur.execute("SELECT event_id, type, payload, status FROM events ORDER BY id")
        return cur.fetchall()


# --- 202 / 200 / 409 -------------------------------------------------------------------------


def test_given_each_spec_example_when_posted_then_all_are_accepted_and_stored(
    client: FlaskClient, shop: shops.Shop
) -> None:
    for body in all_examples():
        response = post_signed(client, body)
        assert response.status_code == 202, response.json
        assert response.json == {"id": body["id"], "status": "accepted"}
    assert [e["event_id"] for e in stored_events()] == [b["id"] for b in all_examples()]
    assert [e["payload"] for e in stored_events()] == all_examples()


def test_given_an_accepted_event_when_redelivered_then_200_duplicate_and_stored_once(
    client: FlaskClient, shop: shops.Shop
) -> None:
    body = example("02")
    assert post_signed(client, body).status_code == 202
    # Same content, different key order and whitespace: still the same event (parsed JSON).
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    response = post_signed(client, reordered, event_id=body["id"])
    assert response.status_code == 200
    assert response.json == {"id": "evt_0002", "status": "duplicate"}
    assert len(stored_events()) == 1


def test_given_an_accepted_event_when_the_same_id_comes_with_other_content_then_409(
    client: FlaskClient, shop: shops.Shop
) -> None:
    body = example("02")
    assert post_signed(client, body).status_code == 202
    changed = mutated(body, lambda b: b["return"]["items"][0].update(quantity=2))
    response = post_signed(client, changed)
    assert response.status_code == 409
    assert "different content" in response.json["error"]
    assert stored_events()[0]["payload"] == body  # the first version is kept


def test_given_unknown_fields_when_accepted_then_they_are_kept_in_the_stored_payload(
    client: FlaskClient, shop: shops.Shop
) -> None:
    body = mutated(example("01"), lambda b: b.update(producer_version="7.1", extra={"deep": [1, None]}))
    body["return"]["items"][0]["sku"] = "SHIRT-L"
    assert post_signed(client, body).status_code == 202
    payload = stored_events()[0]["payload"]
    assert payload["producer_version"] == "7.1"
    assert payload["extra"] == {"deep": [1, None]}
    assert payload["return"]["items"][0]["sku"] == "SHIRT-L"


def test_given_a_numeric_order_id_when_accepted_then_the_order_is_the_same_as_by_gid(
    client: FlaskClient, shop: shops.Shop
) -> None:
    first = example("01")
    second = mutated(example("02"), lambda b: b["return"]["order"].update(id=5196695273621))
    assert post_signed(client, first).status_code == 202
    assert post_signed(client, second).status_code == 202
    with transaction() as cur:
        cur.execute("SELECT order_ref, order_gid, order_name FROM orders")
        assert cur.fetchall() == [
            {
                "order_ref": "gid://shopify/Order/5196695273621",
                "order_gid": "gid://shopify/Order/5196695273621",
                "order_name": "#1106",
            }
        ]


# --- 400 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"[]",
        b'"just a string"',
        b"null",
        b'{"id": "evt_1",',  # truncated
        b'{"id": NaN}',
        b'{"id": "evt_1", "n": Infinity}',
        b'{"n": 1e999}',  # finite syntax, infinite value
        b"\xff\xfe{}",  # not UTF-8
        b'{"id": "evt_1", "s": "\\u0000"}',  # NUL: jsonb cannot hold it
        b'{"id": "evt_1", "s": "\\ud800"}',  # lone surrogate
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 100 + b"1" + b"}" * 100,
        b'{"n": ' + b"9" * 5000 + b"}",  # Python refuses ints this long
    ],
    ids=lambda raw: raw[:24].decode("latin-1"),
)
def test_given_a_correctly_signed_body_that_is_not_a_json_object_then_400(
    client: FlaskClient, shop: shops.Shop, raw: bytes
) -> None:
    response = post_signed(client, raw, event_id="evt_1")
    assert response.status_code == 400
    assert set(response.json) == {"error"}
    assert stored_events() == []


# --- 401 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_given_a_missing_signature_header_then_401(
    client: FlaskClient, shop: shops.Shop, missing: str
) -> None:
    body = example("01")
    raw = encode(body)
    from web.signatures import sign

    headers = sign(raw, body["id"], secret())
    del headers[missing]
    response = client.post("/v1/return-events", data=raw, headers=headers, content_type="application/json")
    assert response.status_code == 401
    assert "missing" in response.json["error"]


def test_given_a_signature_made_with_an_unknown_secret_then_401(
    client: FlaskClient, shop: shops.Shop
) -> None:
    response = post_signed(client, example("01"), key=FOREIGN_SECRET)
    assert response.status_code == 401
    assert response.json == {"error": "no valid signature"}
    assert stored_events() == []


def test_given_a_tampered_body_then_401(client: FlaskClient, shop: shops.Shop) -> None:
    body = example("01")
    from web.signatures import sign

    headers = sign(encode(body), body["id"], secret())
    tampered = encode(mutated(body, lambda b: b["return"]["items"][0].update(quantity=9)))
    response = client.post(
        "/v1/return-events", data=tampered, headers=headers, content_type="application/json"
    )
    assert response.status_code == 401


@pytest.mark.parametrize(("offset", "word"), [(-301, "too old"), (301, "future")])
def test_given_a_timestamp_outside_five_minutes_then_401(
    client: FlaskClient, shop: shops.Shop, offset: int, word: str
) -> None:
    response = post_signed(client, example("01"), timestamp=int(time.time()) + offset)
    assert response.status_code == 401
    assert word in response.json["error"]


@pytest.mark.parametrize(
    "timestamp", ["", "abc", "1.7e9", "-5", "17000000000000000000", "１７００"], ids=repr
)
def test_given_a_malformed_timestamp_header_then_401(
    client: FlaskClient, shop: shops.Shop, timestamp: str
) -> None:
    response = post_signed(client, example("01"), headers={"webhook-timestamp": timestamp})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "signature",
    ["garbage", "v1,", "v1,!!!notbase64", "v1,a,b,c", "v2,abc v1", " ", "v1," + "A" * 10000],
    ids=lambda s: s[:20],
)
def test_given_a_malformed_signature_header_then_401(
    client: FlaskClient, shop: shops.Shop, signature: str
) -> None:
    response = post_signed(client, example("01"), headers={"webhook-signature": signature})
    assert response.status_code == 401


def test_given_several_signatures_of_which_one_is_valid_then_accepted(
    client: FlaskClient, shop: shops.Shop
) -> None:
    """Secret rotation: the producer signs with the old and the new key; either may be ours."""
    from web.signatures import sign

    body = example("01")
    raw = encode(body)
    good = sign(raw, body["id"], secret())
    foreign = sign(raw, body["id"], FOREIGN_SECRET, int(good["webhook-timestamp"]))
    good["webhook-signature"] = " ".join(
        ["v1a,c29tZXRoaW5nIGVsc2U=", foreign["webhook-signature"], good["webhook-signature"], "junk"]
    )
    response = client.post("/v1/return-events", data=raw, headers=good, content_type="application/json")
    assert response.status_code == 202


def test_given_a_webhook_id_different_from_the_body_id_then_401_saying_so(
    client: FlaskClient, shop: shops.Shop
) -> None:
    response = post_signed(client, example("01"), event_id="evt_other")
    assert response.status_code == 401
    assert "webhook-id" in response.json["error"]
    assert stored_events() == []


# --- 413 / 415 -------------------------------------------------------------------------------


def test_given_a_body_over_256_kib_then_413_even_if_correctly_signed(
    client: FlaskClient, shop: shops.Shop
) -> None:
    body = mutated(example("01"), lambda b: b.update(padding="x" * (256 * 1024)))
    response = post_signed(client, body)
    assert response.status_code == 413
    assert set(response.json) == {"error"}


def test_given_a_body_of_exactly_256_kib_then_it_is_not_refused_for_size(
    client: FlaskClient, shop: shops.Shop
) -> None:
    body = example("01")
    base = len(encode(mutated(body, lambda b: b.update(padding=""))))
    body["padding"] = "x" * (256 * 1024 - base)
    assert len(encode(body)) == 256 * 1024
    assert post_signed(client, body).status_code == 202


def test_given_a_content_length_over_the_limit_then_413_without_reading_the_body(
    client: FlaskClient, shop: shops.Shop
) -> None:
    response = client.post(
        "/v1/return-events",
        data=b"{}",
        # The test client computes Content-Length itself; declare a huge one as a client could.
        environ_overrides={"CONTENT_LENGTH": str(10 * 1024 * 1024)},
        content_type="application/json",
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonx",
        "application/json; charset=latin-1",
        "",
    ],
)
def test_given_a_body_that_is_not_declared_application_json_then_415(
    client: FlaskClient, shop: shops.Shop, content_type: str
) -> None:
    response = post_signed(client, example("01"), content_type=content_type)
    assert response.status_code == 415
    assert set(response.json) == {"error"}


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON;charset=UTF-8"]
)
def test_given_application_json_with_a_utf8_charset_then_accepted(
    client: FlaskClient, shop: shops.Shop, content_type: str
) -> None:
    assert post_signed(client, example("01"), content_type=content_type).status_code == 202


def test_given_an_unsigned_oversized_non_json_request_then_415_comes_first(client: FlaskClient) -> None:
    response = client.post("/v1/return-events", data=b"x" * (300 * 1024), content_type="text/plain")
    assert response.status_code == 415


def test_given_an_unsigned_oversized_json_request_then_413_comes_before_401(client: FlaskClient) -> None:
    response = client.post("/v1/return-events", data=b"x" * (300 * 1024), content_type="application/json")
    assert response.status_code == 413


# --- 422 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda b: b["return"]["items"][0].update(quantity=0), "return.items.0.quantity"),
        (lambda b: b["return"]["items"][1].update(quantity=True), "return.items.1.quantity"),
        (lambda b: b["return"]["items"][1].update(quantity=1.5), "return.items.1.quantity"),
        (lambda b: b["return"]["items"][1].update(quantity=1.0), "return.items.1.quantity"),
        (lambda b: b["return"]["items"][1].update(quantity="2"), "return.items.1.quantity"),
        (lambda b: b["return"]["items"][0].update(quantity=10**30), "return.items.0.quantity"),
        (lambda b: b["return"]["items"][0].update(reason_id=0), "return.items.0.reason_id"),
        (lambda b: b["return"]["items"][0].update(reason="r" * 256), "return.items.0.reason"),
        (lambda b: b["return"]["items"][0].update(customer_note="n" * 301), "return.items.0.customer_note"),
        (
            lambda b: b["return"]["items"][0].update(line_item_id="gid://shopify/Order/1"),
            "return.items.0.line_item_id",
        ),
        (lambda b: b["return"]["items"][0].pop("line_item_id"), "return.items.0.line_item_id"),
        (lambda b: b["return"].update(items=[]), "return.items"),
        (lambda b: b["return"].update(items=b["return"]["items"][:1] * 251), "return.items"),
        (lambda b: b["return"].update(order={"name": None}), "return.order"),
        (lambda b: b["return"]["order"].update(id="gid://shopify/Order/abc"), "return.order.id"),
        (lambda b: b["return"].pop("refund_method"), "return.refund_method"),
        (lambda b: b["return"].update(refund_method="cash"), "return.refund_method"),
        (lambda b: b["return"].update(exchange_note="e" * 2001), "return.exchange_note"),
        (lambda b: b["return"].update(origin="email"), "return.origin"),
        (lambda b: b["return"].update(tracking={"url": "https://t.example"}), "return.tracking.number"),
        (
            lambda b: b["return"].update(tracking={"number": "1", "url": "javascript:alert(1)"}),
            "return.tracking.url",
        ),
        (lambda b: b["return"].update(id="R 1"), "return.id"),
        (lambda b: b.update(id="e" * 129), "id"),
        (lambda b: b.update(type="return.updated"), "type"),
        (lambda b: b.update(occurred_at="2026-11-29T10:00:00"), "occurred_at"),
        (lambda b: b.update(occurred_at="29/11/2026"), "occurred_at"),
        # What Python or Postgres cannot hold, or no return event can mean (hardening issue):
        (lambda b: b.update(occurred_at="2026-11-29T10:00:00+16:00"), "occurred_at"),
        (lambda b: b.update(occurred_at="2026-11-29T10:00:00-18:00"), "occurred_at"),
        (lambda b: b.update(occurred_at="2026-11-29T10:00:00+14:01"), "occurred_at"),
        (lambda b: b.update(occurred_at="0001-01-01T00:00:00+01:00"), "occurred_at"),
        (lambda b: b.update(occurred_at="9999-12-31T23:59:59Z"), "occurred_at"),
        (lambda b: b.update(occurred_at="1999-12-31T23:59:59Z"), "occurred_at"),
        (lambda b: b.update(occurred_at="2999-01-01T00:00:00Z"), "occurred_at"),
        (lambda b: b.update(shop="acme.example.com"), "shop"),
        (lambda b: b.update(shop="acme-nl.myshopify.com\n"), "shop"),
        (lambda b: b.pop("return"), "return"),
        (lambda b: b.update({"return": [1]}), "return"),
    ],
)
def test_given_a_field_breaking_the_contract_then_422_names_its_path(
    client: FlaskClient, shop: shops.Shop, change: Any, path: str
) -> None:
    body = mutated(example("01"), change)
    response = post_signed(client, body)
    assert response.status_code == 422, response.json
    assert path in response.json["errors"], response.json
    assert all(isinstance(m, str) for m in response.json["errors"][path])
    assert stored_events() == []


@pytest.mark.parametrize(
    "moment", ["2000-01-01T00:00:00Z", "2026-11-29T10:00:00+14:00", "2026-11-29T10:00:00-14:00"]
)
def test_given_an_occurred_at_at_the_edges_of_the_window_then_accepted(
    client: FlaskClient, shop: shops.Shop, moment: str
) -> None:
    assert (
        post_signed(client, mutated(example("01"), lambda b: b.update(occurred_at=moment))).status_code == 202
    )


def test_given_a_signed_body_of_60000_empty_items_then_a_small_422_at_once(
    client: FlaskClient, shop: shops.Shop
) -> None:
    body = mutated(example("01"), lambda b: b["return"].update(items=[{}] * 60_000))
    response = post_signed(client, body)
    assert response.status_code == 422
    # The length is checked before any item: one error, not 60,000.
    assert response.json == {"errors": {"return.items": ["Longer than maximum length 250."]}}


def test_given_a_body_breaking_many_fields_then_the_422_lists_twenty_and_counts_the_rest(
    client: FlaskClient, shop: shops.Shop
) -> None:
    items = [{"line_item_id": "x", "quantity": 0, "reason_id": 0}] * 30
    response = post_signed(client, mutated(example("01"), lambda b: b["return"].update(items=items)))
    assert response.status_code == 422
    errors = response.json["errors"]
    assert len(errors) == 21 and errors["..."] == ["70 more fields have errors"]


def test_given_refund_method_missing_on_completed_then_accepted(
    client: FlaskClient, shop: shops.Shop
) -> None:
    body = mutated(example("03"), lambda b: b["return"].pop("refund_method"))
    assert post_signed(client, body).status_code == 202


def test_given_an_unknown_shop_then_422_on_shop(client: FlaskClient, shop: shops.Shop) -> None:
    body = mutated(example("01"), lambda b: b.update(shop="stranger.myshopify.com"))
    response = post_signed(client, body)
    assert response.status_code == 422
    assert response.json == {"errors": {"shop": ["unknown shop"]}}
    assert stored_events() == []


def test_given_a_signed_body_without_id_then_422_on_id(client: FlaskClient, shop: shops.Shop) -> None:
    body = mutated(example("01"), lambda b: b.pop("id"))
    response = post_signed(client, body, event_id="evt_0001")
    assert response.status_code == 422
    assert "id" in response.json["errors"]


# --- other routes ----------------------------------------------------------------------------


def test_given_an_unknown_path_or_method_then_json_errors(client: FlaskClient) -> None:
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404 and "error" in missing.json
    wrong = client.get("/v1/return-events")
    assert wrong.status_code == 405 and "error" in wrong.json
    assert "POST" in wrong.headers["Allow"]


def test_given_a_running_app_then_healthz_and_readyz_answer_200(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json == {"status": "ready"}


def test_openapi_documents_both_endpoints_headers_and_every_status(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    post = spec["paths"]["/v1/return-events"]["post"]
    assert {p["name"] for p in post["parameters"]} == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert set(post["responses"]) == {"200", "202", "400", "401", "409", "413", "415", "422", "503"}
    assert "Retry-After" in post["responses"]["503"]["headers"]
    get = spec["paths"]["/v1/returns/{shop}/{return_id}"]["get"]
    assert set(get["responses"]) == {"200", "401", "404", "503"}
    event = spec["components"]["schemas"]["Event"]
    assert set(event["required"]) == {"id", "type", "occurred_at", "shop", "return"}
    assert spec["components"]["schemas"]["Item"]["properties"]["quantity"]["minimum"] == 1


def test_given_the_shop_in_the_path_when_posting_another_shop_event_then_each_is_kept_apart(
    client: FlaskClient, shop: shops.Shop
) -> None:
    shops.register_shop("other.myshopify.com", "t2")
    body = example("04")
    other = mutated(body, lambda b: b.update(id="evt_other_0010", shop="other.myshopify.com"))
    assert post_signed(client, body).status_code == 202
    assert post_signed(client, other).status_code == 202
    with transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM returns")
        assert cur.fetchone()["n"] == 2
    assert SHOP != "other.myshopify.com"
