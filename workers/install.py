"""Installing the app on a shop (the authorization code grant, APP-AUTH.md §2), and what a
(re)install sets going: the webhooks that wake waiting returns, and every open event rung again.

``begin`` makes the redirect to the shop's grant screen; ``complete`` checks the callback (HMAC
with any of the client secrets, single-use ``state`` for that shop, the shop domain, the
timestamp), exchanges the code for an *expiring* offline token pair and records it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from config import get_settings
from workers.shopify import oauth
from workers.shopify.api import ShopifyAPI
from workers.shopify.client import Endpoint, ShopifyClient, StaticToken
from workers.shopify.errors import ShopifyError
from workers.store import installs, outbox, shops
from workers.store.shops import Shop, TokenKind, TokenPair

log = logging.getLogger(__name__)

# Per-shop subscriptions (app/uninstalled and the compliance topics are the app's own, in
# config/shopify.app.toml): a fulfilment is what a return waiting for "order not fulfilled yet" needs.
WAKE_TOPICS = ("FULFILLMENTS_CREATE", "ORDERS_FULFILLED", "ORDERS_PARTIALLY_FULFILLED")


class InstallRefused(Exception):
    """The install cannot go on; the message is safe to show the merchant."""


def callback_url() -> str:
    return f"{get_settings().app_url.rstrip('/')}/shopify/callback"


def webhooks_url() -> str:
    return f"{get_settings().app_url.rstrip('/')}/shopify/webhooks"


def begin(params: Mapping[str, str]) -> str:
    """The URL of the shop's grant screen for ``?shop=`` (an entry from Shopify carries an
    ``hmac``, which must then be right)."""
    settings = get_settings()
    shop = params.get("shop")
    if not oauth.valid_shop_domain(shop):
        raise InstallRefused("that is not a Shopify shop domain (<name>.myshopify.com)")
    assert shop is not None
    if "hmac" in params and not oauth.query_hmac_ok(params, settings.shopify_client_secrets):
        raise InstallRefused("the install link is not signed by Shopify")
    state = installs.new_state(shop, settings.install_state_ttl_s)
    return oauth.authorize_url(
        shop,
        client_id=settings.shopify_client_id,
        scopes=settings.shopify_scopes,
        redirect_uri=callback_url(),
        state=state,
    )


def complete(params: Mapping[str, str]) -> Shop:
    settings = get_settings()
    shop = params.get("shop")
    if not oauth.valid_shop_domain(shop):
        raise InstallRefused("the callback names no valid shop")
    assert shop is not None
    if not oauth.query_hmac_ok(params, settings.shopify_client_secrets):
        raise InstallRefused("the callback is not signed by Shopify")
    if not oauth.callback_fresh(params):
        raise InstallRefused("the callback is too old; start the install again")
    if not installs.consume_state(params.get("state", ""), shop):
        raise InstallRefused("this install link was already used or has expired; start the install again")
    code = params.get("code")
    if not code:
        raise InstallRefused("the callback carries no authorization code")
    try:
        grant = oauth.exchange_code(shop, code)
    except (oauth.TokenRefused, oauth.TokenUnavailable) as exc:
        raise InstallRefused(
            f"Shopify did not give an access token ({type(exc).__name__}); try again"
        ) from exc
    installed = shops.install(
        shop,
        TokenKind.EXPIRING if grant.expiring else TokenKind.STATIC,
        TokenPair(
            grant.access_token,
            grant.scopes,
            grant.expires_in_s,
            grant.refresh_token,
            grant.refresh_expires_in_s,
        ),
    )
    after_install(installed)
    return installed


def install_client_credentials(shop: str) -> Shop:
    """A Dev Dashboard app on one of our own stores: the client credentials grant (§4)."""
    grant = oauth.client_credentials(shop)
    installed = shops.install(
        shop, TokenKind.CLIENT_CREDENTIALS, TokenPair(grant.access_token, grant.scopes, grant.expires_in_s)
    )
    after_install(installed)
    return installed


def after_install(shop: Shop) -> None:
    """Subscribe the wake-up webhooks and ring every open event of the shop: a reinstall resumes
    what waited for it."""
    # The token just issued, as it is (even an install short of scopes can subscribe).
    assert shop.access_token is not None
    api = ShopifyAPI(ShopifyClient(Endpoint(shop.domain, shop.graphql_url, StaticToken(shop.access_token))))
    for topic in WAKE_TOPICS:
        try:
            api.subscribe_webhook(topic, webhooks_url())
        except ShopifyError as exc:
            # Not fatal: the periodic waiting retry still finds a fulfilment, only later.
            log.warning("shop %s: webhook %s not subscribed: %s", shop.domain, topic, type(exc).__name__)
    woken = outbox.rearm_shop(shop.id)
    log.info("shop %s installed (%s, %d open events rung)", shop.domain, shop.token_kind, woken)
