"""Installing the app and keeping its access: the authorization code grant through the real
redirects, expiring tokens refreshed ahead and after a 401, a lost refresh answer recovered, a
refused refresh parked with its install link and resumed by a reinstall."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.app.conftest import AppWorld, record, statuses
from tests.apply.conftest import return_row, wait_until, worker_processes
from workers.apply import apply_order
from workers.apply.run import endpoint_of
from workers.doorbell import publish
from workers.shopify.api import ShopifyAPI
from workers.shopify.client import ShopifyClient
from workers.store import crypto
from workers.store.db import transaction
from workers.store.shops import ShopStatus, TokenKind

ITEMS = {101: 1}


def test_install_through_the_redirects_ends_with_a_working_shop(app_world: AppWorld):
    domain, gids = app_world.new_shop({"#1": ITEMS})
    # When the merchant follows the install link (the stand-in approves at once)
    page = app_world.install(domain)
    # Then the callback says so, and the shop holds an expiring token pair, encrypted
    assert page.status_code == 200 and f"returnsync is installed on {domain}" in page.text
    assert [r.url.split("?")[0] for r in page.history] == [
        f"{app_world.web_url}/shopify/install",
        f"{app_world.admin.base_url}/shops/{domain}/admin/oauth/authorize",
    ]
    shop = app_world.shop(domain)
    assert (shop.status, shop.token_kind) == (ShopStatus.ACTIVE, TokenKind.EXPIRING)
    assert shop.access_expires_at is not None and set(shop.granted_scopes or ()) >= {"write_returns"}
    with transaction() as cur:
        cur.execute("SELECT access_token_enc, refresh_token_enc FROM shops WHERE domain = %s", (domain,))
        stored = cur.fetchone()
    assert stored["refresh_token_enc"] and shop.access_token not in stored["access_token_enc"]
    # The wake-up webhooks are subscribed for the shop
    topics = {s["topic"] for s in app_world.admin.webhook_subscriptions(domain, app_world.client_id)}
    assert topics == {"fulfillments/create", "orders/fulfilled", "orders/partially_fulfilled"}
    # And an event syncs with the installed token
    order_id = record(domain, "created", "R-1", gids["#1"], ITEMS)
    assert apply_order(order_id).outcome == "applied"
    assert return_row("R-1")["sync"] == "synced"


def test_a_forged_or_replayed_callback_installs_nothing(app_world: AppWorld):
    domain, _ = app_world.new_shop()
    first = requests.get(
        f"{app_world.web_url}/shopify/install", params={"shop": domain}, timeout=30, allow_redirects=False
    )
    authorize = first.headers["Location"]
    # Shopify approves and sends the browser back with a signed code
    approved = requests.get(authorize, timeout=30, allow_redirects=False)
    callback = approved.headers["Location"]
    params = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
    base = f"{app_world.web_url}/shopify/callback"
    # A tampered parameter breaks the HMAC; a shop domain that is not one is refused outright
    for forged in (
        {**params, "shop": "evil.myshopify.com"},
        {**params, "code": "guessed"},
        {**params, "hmac": "0" * 64},
    ):
        assert requests.get(base, params=forged, timeout=30).status_code == 400
    assert (
        requests.get(base, params={**params, "shop": "x.myshopify.com.evil.test"}, timeout=30).status_code
        == 400
    )
    # The genuine one installs once; replayed, its state is spent
    assert requests.get(callback, timeout=30).status_code == 200
    replay = requests.get(callback, timeout=30)
    assert replay.status_code == 400 and "already used" in replay.text


def test_an_install_that_grants_too_little_says_what_is_missing_and_how_to_fix_it(app_world: AppWorld):
    domain, gids = app_world.new_shop({"#1": ITEMS})
    app_world.admin.set_grant_limit(domain, ["read_orders", "write_orders"])
    page = app_world.install(domain)
    assert page.status_code == 200 and "read_returns, write_returns" in page.text
    order_id = record(domain, "created", "R-1", gids["#1"], ITEMS)
    assert apply_order(order_id).outcome == "waiting"
    detail = return_row("R-1")["detail"]
    assert "shop needs reinstall" in detail and f"/shopify/install?shop={domain}" in detail
    # Reinstalled with every permission, the waiting event syncs
    app_world.admin.set_grant_limit(domain, None)
    assert app_world.install(domain).status_code == 200
    assert apply_order(order_id).outcome == "applied"
    assert statuses(domain) == {e: "applied" for e in statuses(domain)}


@pytest.mark.app_tokens(ttl_s=2)
def test_an_expired_token_is_refreshed_before_use_and_its_rotation_kept(app_world: AppWorld):
    domain, gids = app_world.new_shop({"#1": ITEMS, "#2": {102: 1}})
    app_world.install(domain)
    first = app_world.shop(domain)
    assert apply_order(record(domain, "created", "R-1", gids["#1"], ITEMS)).outcome == "applied"
    assert app_world.refreshes(domain) == []
    # When the token has expired on Shopify's side (its 2 s are over)
    wait_until(lambda: time.time() > first.access_expires_at.timestamp() + 0.5, 10)
    # Then the next run refreshes it once, before any call is refused
    assert apply_order(record(domain, "created", "R-2", gids["#2"], {102: 1})).outcome == "applied"
    [refresh] = app_world.refreshes(domain)
    assert (refresh["outcome"], refresh["refresh_token_presented_was"]) == ("issued", "current")
    after = app_world.shop(domain)
    assert after.token_version == first.token_version + 1 and after.access_token != first.access_token
    calls = app_world.admin.calls(domain)
    assert all(c["status"] != 401 for c in calls)


def test_a_token_shopify_refuses_is_refreshed_once_and_the_request_sent_again(app_world: AppWorld):
    domain, gids = app_world.new_shop({"#1": ITEMS})
    app_world.install(domain)
    # Given Shopify refuses the access token we hold (revoked on its side), not yet expired for us
    with transaction() as cur:
        cur.execute(
            "UPDATE shops SET access_token_enc = %s WHERE domain = %s",
            (crypto.encrypt("shpat_revoked"), domain),
        )
    order_id = record(domain, "created", "R-1", gids["#1"], ITEMS)
    # Then the first 401 brings one refresh, the request goes again, and the return syncs
    assert apply_order(order_id).outcome == "applied"
    assert [c["status"] for c in app_world.admin.calls(domain)].count(401) == 1
    [refresh] = app_world.refreshes(domain)
    assert refresh["outcome"] == "issued"
    assert statuses(domain) == {e: "applied" for e in statuses(domain)}


def test_a_worker_holding_a_replaced_token_uses_the_new_pair_without_refreshing(app_world: AppWorld):
    domain, _ = app_world.new_shop()
    app_world.install(domain)
    stale = app_world.shop(domain)
    # Given the pair was replaced meanwhile (a reinstall revokes the old access token at once)
    assert app_world.install(domain).status_code == 200
    api = ShopifyAPI(ShopifyClient(endpoint_of(stale)))
    # When the worker that still holds the old pair calls, Shopify answers 401 once...
    assert "write_returns" in api.access_scopes()
    # ...and the row, read again under its lock, has the new pair: no refresh is spent on it
    assert [c["status"] for c in app_world.admin.calls(domain)][-2:] == [401, 200]
    assert app_world.refreshes(domain) == []


@pytest.mark.app_tokens(ttl_s=2)
def test_a_lost_refresh_answer_is_recovered_with_the_previous_refresh_token(app_world: AppWorld):
    domain, gids = app_world.new_shop({"#1": ITEMS})
    app_world.install(domain)
    expires = app_world.shop(domain).access_expires_at
    wait_until(lambda: time.time() > expires.timestamp() + 0.5, 10)
    # Given Shopify refreshes but its answer never arrives
    app_world.admin.set_token_faults(app_world.client_id, lost_response_next=1)
    order_id = record(domain, "created", "R-1", gids["#1"], ITEMS)
    # When the run needs a token, the refresh is asked again with the refresh token it holds
    assert apply_order(order_id).outcome == "applied"
    refreshes = app_world.refreshes(domain)
    assert [(r["outcome"], r["refresh_token_presented_was"]) for r in refreshes] == [
        ("fault_lost", "current"),
        ("issued", "previous"),  # Shopify's grace: the previous refresh token until its replacement is used
    ]
    assert statuses(domain) == {e: "applied" for e in statuses(domain)}


@pytest.mark.app_tokens(ttl_s=2, refresh_ttl_s=1)
def test_a_refused_refresh_parks_the_shop_with_its_install_link_and_a_reinstall_resumes_it(
    app_world: AppWorld,
):
    domain, gids = app_world.new_shop({"#1": ITEMS})
    app_world.install(domain)
    expires = app_world.shop(domain).access_expires_at
    # Given both the access token and its refresh token have lapsed
    wait_until(lambda: time.time() > expires.timestamp() + 0.5, 10)
    order_id = record(domain, "created", "R-1", gids["#1"], ITEMS)
    # Then the run waits, saying why and where to reinstall, and the shop is parked
    assert apply_order(order_id).outcome == "waiting"
    row = return_row("R-1")
    assert row["sync"] == "waiting"
    assert "Shopify refused to refresh the access token: invalid_grant" in row["detail"]
    assert row["detail"].endswith(f"reinstall at {app_world.web_url}/shopify/install?shop={domain}")
    assert app_world.shop(domain).status is ShopStatus.NEEDS_REINSTALL
    # A parked shop is not called again
    calls_before = len(app_world.admin.calls(domain))
    assert apply_order(order_id).outcome == "waiting"
    assert len(app_world.admin.calls(domain)) == calls_before
    # When the merchant reinstalls, everything that waited syncs; nothing was lost
    assert app_world.install(domain).status_code == 200
    assert apply_order(order_id).outcome == "applied"
    assert statuses(domain) == {e: "applied" for e in statuses(domain)}


@pytest.mark.app_tokens(ttl_s=3)
def test_a_token_expiring_in_a_backlog_is_refreshed_once_per_expiry_while_8_workers_are_busy(
    app_world: AppWorld,
):
    orders = {f"#{n}": {300 + n: 1} for n in range(40)}
    domain, gids = app_world.new_shop(orders)
    app_world.install(domain)
    # Every call a little slow, so the backlog outlives the token a few times over
    app_world.admin.set_faults(domain, latency_ms=100)
    order_ids = [record(domain, "created", f"R-{n}", gids[f"#{n}"], {300 + n: 1}) for n in range(40)]
    with worker_processes(concurrency=1, processes=8):
        for order_id in order_ids:
            assert publish(order_id)
        assert wait_until(lambda: set(statuses(domain).values()) == {"applied"}, 120)
    # No event failed or waited for the token: a run was applied, or found its order busy or done,
    # or handed its order back while the shop's shared API budget refilled (eight runs at once
    # ask for more than one bucket holds), never a failed attempt
    with transaction() as cur:
        cur.execute("SELECT DISTINCT outcome FROM attempts WHERE outcome IS NOT NULL")
        assert {row["outcome"] for row in cur.fetchall()} <= {"applied", "busy", "idle", "throttled"}
    # Each expiry brought exactly one refresh: never two workers refreshing the same pair (the
    # second would have presented the previous refresh token), however many were busy.
    refreshes = app_world.refreshes(domain)
    assert refreshes, "the backlog did not outlive the token: the test proves nothing"
    assert {(r["outcome"], r["refresh_token_presented_was"]) for r in refreshes} == {("issued", "current")}
    assert app_world.shop(domain).token_version == 1 + len(refreshes)
