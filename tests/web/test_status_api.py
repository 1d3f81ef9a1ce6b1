"""GET /v1/returns/{shop}/{return id}: where a return stands, in INGEST.md's exact shape."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.web.conftest import SHOP, example, post_signed
from workers.store import shops
from workers.store.db import transaction


def test_given_two_applied_events_when_asked_then_200_with_the_documented_body(
    client: FlaskClient, shop: shops.Shop, status_headers: dict[str, str]
) -> None:
    # Sent out of order: the timeline is still in occurred_at order.
    assert post_signed(client, example("02")).status_code == 202
    assert post_signed(client, example("01")).status_code == 202
    # What a worker writes once Shopify has the return (the workers own these columns).
    with transaction() as cur:
        cur.execute(
            "UPDATE returns SET applied_state = 'created', sync = 'synced',"
            " shopify_return_gid = 'gid://shopify/Return/15297151282', shopify_status = 'OPEN'"
        )
        cur.execute("UPDATE events SET status = 'applied'")

    response = client.get(f"/v1/returns/{SHOP}/R-100234", headers=status_headers)

    assert response.status_code == 200
    assert response.json == {
        "shop": "acme-nl.myshopify.com",
        "return_id": "R-100234",
        "order": {"id": "gid://shopify/Order/5196695273621", "name": "#1106"},
        "state": "created",
        "sync": "synced",
        "detail": None,
        "shopify": {"return_id": "gid://shopify/Return/15297151282", "status": "OPEN"},
        "events": [
            {"id": "evt_0001", "type": "return.requested", "status": "applied"},
            {"id": "evt_0002", "type": "return.created", "status": "applied"},
        ],
    }


def test_given_a_just_accepted_return_when_asked_then_pending_with_nothing_on_shopify_yet(
    client: FlaskClient, shop: shops.Shop, status_headers: dict[str, str]
) -> None:
    assert post_signed(client, example("04")).status_code == 202
    body = client.get(f"/v1/returns/{SHOP}/R-100240", headers=status_headers).json
    assert body["state"] is None
    assert body["sync"] == "pending"
    assert body["order"] == {"id": None, "name": "#1107"}
    assert body["shopify"] == {"return_id": None, "status": None}
    assert body["events"] == [{"id": "evt_0010", "type": "return.created", "status": "accepted"}]


def test_given_a_synced_return_when_a_new_event_arrives_then_it_reads_pending_until_applied(
    client: FlaskClient, shop: shops.Shop, status_headers: dict[str, str]
) -> None:
    assert post_signed(client, example("02")).status_code == 202
    with transaction() as cur:
        cur.execute("UPDATE returns SET applied_state = 'created', sync = 'synced'")
        cur.execute("UPDATE events SET status = 'applied'")
    assert post_signed(client, example("03")).status_code == 202
    body = client.get(f"/v1/returns/{SHOP}/R-100234", headers=status_headers).json
    assert (body["state"], body["sync"]) == ("created", "pending")


def test_given_no_or_a_wrong_token_then_401(client: FlaskClient, shop: shops.Shop) -> None:
    assert post_signed(client, example("01")).status_code == 202
    url = f"/v1/returns/{SHOP}/R-100234"
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic bG9jYWw="},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer \u00e9\u00e9"},
    ):
        response = client.get(url, headers=headers)
        assert response.status_code == 401, headers
        assert set(response.json) == {"error"}
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_given_a_return_never_seen_then_404(
    client: FlaskClient, shop: shops.Shop, status_headers: dict[str, str]
) -> None:
    assert post_signed(client, example("01")).status_code == 202
    for url in (f"/v1/returns/{SHOP}/R-unknown", "/v1/returns/other.myshopify.com/R-100234"):
        response = client.get(url, headers=status_headers)
        assert response.status_code == 404
        assert set(response.json) == {"error"}


def test_given_control_characters_in_the_path_then_404_and_the_raw_path_is_never_logged(
    client: FlaskClient, shop: shops.Shop, status_headers: dict[str, str], caplog
) -> None:
    caplog.set_level("DEBUG")
    for segment in ("R-1%00", "R-1%0aFORGED log line", "R%0d%0aX"):
        response = client.get(f"/v1/returns/{SHOP}/{segment}", headers=status_headers)
        assert response.status_code == 404, segment
        assert set(response.json) == {"error"}
    assert client.get("/v1/returns/acme%00.myshopify.com/R-1", headers=status_headers).status_code == 404
    assert "FORGED" not in caplog.text and "\x00" not in caplog.text
