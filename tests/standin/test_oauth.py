"""The stand-in as Shopify's app side: authorize, the token endpoint, token lifetimes, refresh
rotation and its grace rule, faults, the client credentials grant, the request log, uninstall.
Real HTTP against the session's stand-in; every test uses an app and a shop of its own."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from standin.apps import js_query_encode, oauth_hmac
from tests.standin.apphelp import (
    REDIRECT,
    authorize,
    callback_is_genuine,
    callback_params,
    exchange,
    gql,
    install,
    new_app,
    new_domain,
    refresh,
    token_url,
    wait_until,
)

INVALID_TOKEN_BODY = {
    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
}
SCOPES_QUERY = "{ currentAppInstallation { accessScopes { handle } } }"
SCOPES_LIST = ["read_orders", "write_orders", "read_returns", "write_returns"]
TAGS_ADD = """mutation($id: ID!) { tagsAdd(id: $id, tags: ["x"]) { userErrors { message } } }"""


@pytest.fixture()
def shop(admin) -> str:
    domain = new_domain()
    admin.create_shop(domain, None)
    return domain


def scopes_of(standin, shop: str, token: str) -> set[str]:
    body = gql(standin, shop, token, SCOPES_QUERY).json()
    return {s["handle"] for s in body["data"]["currentAppInstallation"]["accessScopes"]}


# --- authorize -------------------------------------------------------------------------------


@pytest.mark.parametrize("by_host", [False, True])
def test_authorize_redirects_to_the_callback_with_shopifys_hmac(standin, admin, shop, by_host):
    client_id, secret = new_app(admin)
    response = authorize(standin, shop, client_id, state="nonce 42/é", by_host=by_host)
    params = callback_params(response)
    assert set(params) == {"code", "hmac", "host", "shop", "state", "timestamp"}
    assert params["shop"] == shop and params["state"] == "nonce 42/é"
    padded = params["host"] + "=" * (-len(params["host"]) % 4)
    assert base64.b64decode(padded).decode() == f"admin.shopify.com/store/{shop.split('.')[0]}"
    assert params["timestamp"].isdigit()
    # the APP-AUTH.md snippet accepts it; any change to a value breaks it
    assert callback_is_genuine(params, secret)
    assert not callback_is_genuine(dict(params, state="other"), secret)
    assert not callback_is_genuine(params, "shpss_wrong")


def test_the_hmac_encodes_values_as_shopifys_js_library():
    # URLSearchParams + '%20': letters, digits and *-._ stay; ~ and ' are escaped; space is %20.
    assert js_query_encode("a b~c*d'e/é") == "a%20b%7Ec*d%27e%2F%C3%A9"
    expected = "code=1&shop=s.myshopify.com&state=a%20b%7E"
    import hashlib
    import hmac

    digest = hmac.new(b"k", expected.encode(), hashlib.sha256).hexdigest()
    assert oauth_hmac({"state": "a b~", "code": "1", "shop": "s.myshopify.com", "hmac": "x"}, "k") == digest


def test_authorize_refuses_an_unknown_app_or_shop_with_a_plain_page(standin, admin, shop):
    client_id, _ = new_app(admin)
    unknown_app = authorize(standin, shop, "nope")
    assert unknown_app.status_code == 400 and "text/html" in unknown_app.headers["Content-Type"]
    assert "client_id" in unknown_app.text
    unknown_shop = authorize(standin, "missing.myshopify.com", client_id)
    assert unknown_shop.status_code == 400 and "missing.myshopify.com" in unknown_shop.text


# --- code exchange ---------------------------------------------------------------------------


def test_expiring_code_exchange_gives_a_pair_with_the_requested_scopes(standin, admin, shop):
    client_id, secret = new_app(admin, token_ttl_s=120, refresh_token_ttl_s=3000)
    tokens = install(standin, shop, client_id, secret, scope="read_orders,write_returns")
    assert set(tokens) == {"access_token", "scope", "expires_in", "refresh_token", "refresh_token_expires_in"}
    assert tokens["scope"] == "read_orders,write_returns"
    assert tokens["expires_in"] == 120 and tokens["refresh_token_expires_in"] == 3000
    assert scopes_of(standin, shop, tokens["access_token"]) == {"read_orders", "write_returns"}


@pytest.mark.parametrize("expiring", [None, "0", 0])
def test_code_exchange_without_expiring_gives_a_non_expiring_token(standin, admin, shop, expiring):
    client_id, secret = new_app(admin, token_ttl_s=1)
    tokens = install(standin, shop, client_id, secret, expiring=expiring)
    assert set(tokens) == {"access_token", "scope"}
    assert gql(standin, shop, tokens["access_token"], SCOPES_QUERY).status_code == 200


def test_expiring_given_as_the_python_librarys_integer_and_as_a_form(standin, admin, shop):
    client_id, secret = new_app(admin)
    params = callback_params(authorize(standin, shop, client_id))
    as_int = exchange(standin, shop, client_id, secret, params["code"], expiring=1).json()
    assert "refresh_token" in as_int
    params = callback_params(authorize(standin, shop, client_id))
    form = requests.post(
        token_url(standin, shop),
        data={"client_id": client_id, "client_secret": secret, "code": params["code"], "expiring": "1"},
        timeout=10,
    )
    assert form.status_code == 200 and "refresh_token" in form.json()


def test_a_code_is_single_use_and_bound_to_its_app_and_shop(standin, admin, shop):
    client_id, secret = new_app(admin)
    params = callback_params(authorize(standin, shop, client_id))
    other_shop = new_domain()
    admin.create_shop(other_shop, None)
    elsewhere = exchange(standin, other_shop, client_id, secret, params["code"])
    assert elsewhere.status_code == 400 and elsewhere.json()["error"] == "invalid_request"
    assert exchange(standin, shop, client_id, secret, params["code"]).status_code == 200
    again = exchange(standin, shop, client_id, secret, params["code"])
    assert again.status_code == 400
    assert set(again.json()) == {"error", "error_description"} and again.json()["error"] == "invalid_request"
    unknown = exchange(standin, shop, client_id, secret, "0907a61c")
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_request"


def test_wrong_client_credentials_are_invalid_client(standin, admin, shop):
    client_id, secret = new_app(admin)
    params = callback_params(authorize(standin, shop, client_id))
    wrong = exchange(standin, shop, client_id, "shpss_wrong", params["code"])
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    # the code was not spent by the refused request
    assert exchange(standin, shop, client_id, secret, params["code"]).status_code == 200


def test_every_listed_secret_is_accepted_while_rotating_and_the_first_signs(standin, admin, shop):
    client_id, old = new_app(admin)
    new = "shpss_new_" + client_id
    admin.register_app(client_id, [new, old])
    params = callback_params(authorize(standin, shop, client_id))
    assert callback_is_genuine(params, new) and not callback_is_genuine(params, old)
    assert exchange(standin, shop, client_id, old, params["code"]).status_code == 200


def test_a_new_code_exchange_replaces_the_previous_pair(standin, admin, shop):
    client_id, secret = new_app(admin)
    first = install(standin, shop, client_id, secret)
    second = install(standin, shop, client_id, secret, scope="read_orders,read_returns,write_returns")
    assert gql(standin, shop, first["access_token"], SCOPES_QUERY).status_code == 401
    old_refresh = refresh(standin, shop, client_id, secret, first["refresh_token"])
    assert old_refresh.status_code == 400 and old_refresh.json()["error"] == "invalid_grant"
    assert scopes_of(standin, shop, second["access_token"]) == {
        "read_orders",
        "read_returns",
        "write_returns",
    }


def test_a_grant_limit_installs_without_the_missing_scopes(standin, admin, shop):
    client_id, secret = new_app(admin)
    admin.set_grant_limit(shop, ["read_orders", "write_orders"])
    tokens = install(standin, shop, client_id, secret)
    assert tokens["scope"] == "read_orders,write_orders"
    order = admin.create_order(shop, "#1", [{"quantity": 1}])
    body = gql(
        standin,
        shop,
        tokens["access_token"],
        "query($id: ID!) { return(id: $id) { id } }",
        {"id": order["id"]},
    )
    assert body.json()["errors"][0]["extensions"]["code"] == "ACCESS_DENIED"
    admin.set_grant_limit(shop, None)
    assert (
        install(standin, shop, client_id, secret)["scope"]
        == "read_orders,write_orders,read_returns,write_returns"
    )


# --- lifetimes -------------------------------------------------------------------------------


def test_an_access_token_expires_after_the_apps_ttl(standin, admin, shop):
    client_id, secret = new_app(admin, token_ttl_s=1)
    tokens = install(standin, shop, client_id, secret)
    assert gql(standin, shop, tokens["access_token"], SCOPES_QUERY).status_code == 200

    def expired() -> dict | None:  # (a requests.Response is falsy when not 2xx)
        response = gql(standin, shop, tokens["access_token"], SCOPES_QUERY)
        return response.json() if response.status_code == 401 else None

    assert wait_until(expired, timeout_s=10, interval_s=0.2) == INVALID_TOKEN_BODY
    assert admin.calls(shop)[-1]["auth"] == "expired"
    # the refresh token still works and its new access token is good
    renewed = refresh(standin, shop, client_id, secret, tokens["refresh_token"]).json()
    assert gql(standin, shop, renewed["access_token"], SCOPES_QUERY).status_code == 200


def test_legacy_tokens_keep_working_untied_to_any_app(standin, admin):
    domain = new_domain("legacy")
    admin.create_shop(domain, "shpat_legacy", scopes=["read_orders"])
    assert scopes_of(standin, domain, "shpat_legacy") == {"read_orders"}
    assert gql(standin, domain, "shpat_unknown", SCOPES_QUERY).json() == INVALID_TOKEN_BODY


# --- refresh rotation and the grace rule -----------------------------------------------------


def test_refresh_rotates_and_the_previous_token_lasts_until_its_replacement_is_used(standin, admin, shop):
    client_id, secret = new_app(admin)
    pair1 = install(standin, shop, client_id, secret)
    pair2 = refresh(standin, shop, client_id, secret, pair1["refresh_token"]).json()
    assert pair2["refresh_token"] != pair1["refresh_token"] and pair2["access_token"] != pair1["access_token"]
    assert set(pair2) == {"access_token", "scope", "expires_in", "refresh_token", "refresh_token_expires_in"}
    # pair2's refresh token is unused: the previous one (pair1's) still works, and gives a fresh
    # pair, retiring the unused one it had issued
    pair3 = refresh(standin, shop, client_id, secret, pair1["refresh_token"]).json()
    assert pair3["refresh_token"] not in (pair1["refresh_token"], pair2["refresh_token"])
    retired = refresh(standin, shop, client_id, secret, pair2["refresh_token"])
    assert retired.status_code == 400 and retired.json()["error"] == "invalid_grant"
    # using the replacement (pair3's) retires pair1's for good
    pair4 = refresh(standin, shop, client_id, secret, pair3["refresh_token"]).json()
    assert (
        refresh(standin, shop, client_id, secret, pair1["refresh_token"]).json()["error"] == "invalid_grant"
    )
    # and pair3's is now the previous one: usable while pair4's is unused
    assert refresh(standin, shop, client_id, secret, pair3["refresh_token"]).status_code == 200
    assert (
        refresh(standin, shop, client_id, secret, pair4["refresh_token"]).json()["error"] == "invalid_grant"
    )
    presented = [r["refresh_token_presented_was"] for r in admin.token_requests(client_id, shop)]
    assert presented == [None, "current", "previous", "retired", "current", "retired", "previous", "retired"]


def test_a_lost_refresh_answer_is_recovered_with_the_previous_refresh_token(standin, admin, shop):
    client_id, secret = new_app(admin)
    pair1 = install(standin, shop, client_id, secret)
    admin.set_token_faults(client_id, lost_response_next=1)
    with pytest.raises(requests.ConnectionError):
        refresh(standin, shop, client_id, secret, pair1["refresh_token"])
    # the pair was issued but never seen; the worker retries with what it has stored
    recovered = refresh(standin, shop, client_id, secret, pair1["refresh_token"])
    assert recovered.status_code == 200
    assert gql(standin, shop, recovered.json()["access_token"], SCOPES_QUERY).status_code == 200
    log = admin.token_requests(client_id, shop)
    assert [(e["outcome"], e["refresh_token_presented_was"]) for e in log[1:]] == [
        ("fault_lost", "current"),
        ("issued", "previous"),
    ]
    assert log[1]["processed_outcome"] == "issued"


def test_an_error_fault_answers_503_without_processing(standin, admin, shop):
    client_id, secret = new_app(admin)
    pair1 = install(standin, shop, client_id, secret)
    admin.set_token_faults(client_id, error_next=2, error_status=503)
    statuses = [
        refresh(standin, shop, client_id, secret, pair1["refresh_token"]).status_code for _ in range(2)
    ]
    assert statuses == [503, 503]
    retried = refresh(standin, shop, client_id, secret, pair1["refresh_token"])
    assert retried.status_code == 200
    outcomes = [
        (e["outcome"], e["refresh_token_presented_was"]) for e in admin.token_requests(client_id, shop)
    ]
    assert outcomes[1:] == [("fault_error", "current"), ("fault_error", "current"), ("issued", "current")]


def test_an_unknown_or_expired_refresh_token_is_invalid_grant(standin, admin, shop):
    client_id, secret = new_app(admin, refresh_token_ttl_s=1)
    pair = install(standin, shop, client_id, secret)
    unknown = refresh(standin, shop, client_id, secret, "shprt_unknown")
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"

    def refused() -> bool:
        return refresh(standin, shop, client_id, secret, pair["refresh_token"]).status_code == 400

    wait_until(refused, timeout_s=10, interval_s=0.2)
    log = admin.token_requests(client_id, shop)
    assert log[1]["refresh_token_presented_was"] == "unknown" and log[-1]["outcome"] == "invalid_grant"


# --- client credentials ----------------------------------------------------------------------


def test_client_credentials_only_on_the_organizations_own_stores(standin, admin):
    client_id, secret = new_app(
        admin, client_credentials_ttl_s=86399, scopes=["read_orders", "write_returns"]
    )
    own, foreign = new_domain("own"), new_domain("foreign")
    admin.create_shop(own, None, own_store_apps=[client_id])
    admin.create_shop(foreign, None)
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    granted = requests.post(token_url(standin, own), data=form, timeout=10)
    assert granted.status_code == 200
    assert set(granted.json()) == {"access_token", "scope", "expires_in"}
    assert granted.json()["expires_in"] == 86399 and granted.json()["scope"] == "read_orders,write_returns"
    assert scopes_of(standin, own, granted.json()["access_token"]) == {"read_orders", "write_returns"}
    as_json = requests.post(token_url(standin, own), json=form, timeout=10)
    assert as_json.status_code == 200
    refused = requests.post(token_url(standin, foreign), data=form, timeout=10)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client"
    wrong = requests.post(token_url(standin, own), data=dict(form, client_secret="x"), timeout=10)
    assert wrong.status_code == 401 and wrong.json() == {"error": "invalid_client"}
    outcomes = [(e["shop"], e["outcome"]) for e in admin.token_requests(client_id)]
    assert outcomes == [
        (own, "issued"),
        (own, "issued"),
        (foreign, "invalid_client"),
        (own, "invalid_client"),
    ]


def test_own_store_apps_come_from_the_seed(standin, admin):
    client_id, secret = "seeded-" + new_domain()[4:12], "shpss_seeded"
    domain = new_domain("seeded")
    admin.load_seed(
        {
            "apps": [{"client_id": client_id, "client_secrets": [secret], "client_credentials_ttl_s": 60}],
            "shops": [{"domain": domain, "own_store_apps": [client_id], "orders": []}],
        }
    )
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    assert requests.post(token_url(standin, domain), data=form, timeout=10).json()["expires_in"] == 60


# --- the log ---------------------------------------------------------------------------------


def test_the_token_request_log_counts_refreshes_per_shop_and_holds_no_token(standin, admin):
    client_id, secret = new_app(admin)
    shops = [new_domain("log"), new_domain("log")]
    for domain in shops:
        admin.create_shop(domain, None)
    pair = install(standin, shops[0], client_id, secret)
    for _ in range(3):
        pair = refresh(standin, shops[0], client_id, secret, pair["refresh_token"]).json()
    other = install(standin, shops[1], client_id, secret)
    refresh(standin, shops[1], client_id, secret, other["refresh_token"])
    log = admin.token_requests(client_id)
    refreshes = {
        d: sum(1 for e in log if e["shop"] == d and e["grant_type"] == "refresh_token") for d in shops
    }
    assert refreshes == {shops[0]: 3, shops[1]: 1}
    assert all(set(e) >= {"at", "shop", "grant_type", "outcome", "refresh_token_presented_was"} for e in log)
    text = json.dumps(log)
    assert "shpat_" not in text and "shprt_" not in text and secret not in text
    assert len(admin.token_requests(client_id, shop=shops[1])) == 2


# --- uninstall -------------------------------------------------------------------------------


def test_uninstall_revokes_every_token_at_once(standin, admin, shop):
    client_id, secret = new_app(admin)
    pair = install(standin, shop, client_id, secret)
    fresh = refresh(standin, shop, client_id, secret, pair["refresh_token"]).json()
    result = admin.uninstall(shop, client_id)
    assert result["revoked_access_tokens"] == 2 and result["revoked_refresh_tokens"] == 2
    for token in (pair["access_token"], fresh["access_token"]):
        response = gql(standin, shop, token, SCOPES_QUERY)
        assert response.status_code == 401 and response.json() == INVALID_TOKEN_BODY
    for token in (pair["refresh_token"], fresh["refresh_token"]):
        response = refresh(standin, shop, client_id, secret, token)
        assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    # a reinstall (new authorization) works again
    again = install(standin, shop, client_id, secret)
    assert gql(standin, shop, again["access_token"], SCOPES_QUERY).status_code == 200
    assert admin.state(shop)["apps"] == [{"client_id": client_id, "installed": True, "scopes": SCOPES_LIST}]


def test_the_redirect_uri_must_be_one_of_the_apps_when_it_lists_them(standin, admin, shop):
    client_id, _ = new_app(admin, redirect_urls=["https://elsewhere.example/cb"])
    refused = authorize(standin, shop, client_id)
    assert refused.status_code == 400 and "redirect_uri" in refused.text
    client_id, _ = new_app(admin, redirect_urls=[REDIRECT])
    assert authorize(standin, shop, client_id).status_code == 302


def test_a_mutation_with_an_app_token_is_logged_like_any_other(standin, admin, shop):
    client_id, secret = new_app(admin)
    tokens = install(standin, shop, client_id, secret)
    order = admin.create_order(shop, "#7", [{"quantity": 1}])
    assert gql(standin, shop, tokens["access_token"], TAGS_ADD, {"id": order["id"]}).status_code == 200
    assert admin.state(shop)["orders"][0]["tags"] == ["x"]


def test_the_token_endpoint_is_also_addressed_by_host(standin, admin, shop):
    client_id, secret = new_app(admin)
    params = callback_params(authorize(standin, shop, client_id, by_host=True))
    response = requests.post(
        f"{standin.url}/admin/oauth/access_token",
        json={"client_id": client_id, "client_secret": secret, "code": params["code"], "expiring": "1"},
        headers={"Host": shop},
        timeout=10,
    )
    assert response.status_code == 200 and "refresh_token" in response.json()
    unknown = requests.post(
        f"{standin.url}/admin/oauth/access_token", json={}, headers={"Host": "nope.myshopify.com"}, timeout=10
    )
    assert unknown.status_code == 404
