"""A shop's Admin API access, as the Shopify client uses it: the token to send now, refreshed ahead
of its expiry and once after a 401, never a token known to be expired.

Three kinds of token (``TokenKind``): a legacy static token (nothing to refresh: a refusal means a
reinstall), an expiring offline token with a rotating refresh token, and a client-credentials
token (our own Dev Dashboard store: ask again). Every refresh goes through
``shops.refresh_locked``: one at a time per shop across all workers, the new pair committed before
it is used. A refresh Shopify refuses for good marks the shop *needs reinstall* (with its install
link); one that gets no answer is tried again later with the same refresh token, which Shopify keeps
usable until its replacement is first used.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from workers import metrics
from workers.shopify import oauth
from workers.shopify.errors import ShopifyUnavailable, Unauthorized
from workers.statuses import Category
from workers.store import shops
from workers.store.shops import Shop, ShopStatus, TokenKind, TokenPair

log = logging.getLogger(__name__)


class AccessLost(Exception):
    """The shop has no usable access until it is (re)installed; ``detail`` says so, with the link."""

    def __init__(self, detail: str, category: Category = Category.ACCESS_REFUSED) -> None:
        super().__init__(detail)
        self.detail = detail
        self.category = category


def lost_detail(shop: Shop, why: str) -> str:
    return f"{why}: reinstall at {shop.install_link}"


def check_installed(shop: Shop) -> None:
    """Refuse to call Shopify for a shop that has no access (``AccessLost``)."""
    if shop.status is ShopStatus.UNINSTALLED or shop.access_token is None:
        raise AccessLost(lost_detail(shop, "app uninstalled"), Category.APP_UNINSTALLED)
    if shop.status is ShopStatus.NEEDS_REINSTALL:
        why = shop.status_detail or "access refused"
        raise AccessLost(lost_detail(shop, f"shop needs reinstall ({why})"))


def _pair(grant: oauth.TokenGrant) -> TokenPair:
    return TokenPair(
        access_token=grant.access_token,
        scopes=grant.scopes,
        access_expires_in_s=grant.expires_in_s,
        refresh_token=grant.refresh_token,
        refresh_expires_in_s=grant.refresh_expires_in_s,
    )


def _obtain(shop: Shop, refresh_token: str | None) -> TokenPair:
    """Ask Shopify for a new pair (under the shop's row lock: one request per expiry)."""
    try:
        pair = _request_pair(shop, refresh_token)
    except oauth.TokenRefused:
        metrics.token_refresh(shop.domain, "refused")
        raise
    except oauth.TokenUnavailable:
        metrics.token_refresh(shop.domain, "unavailable")
        raise
    metrics.token_refresh(shop.domain, "refreshed")
    return pair


def _request_pair(shop: Shop, refresh_token: str | None) -> TokenPair:
    if shop.token_kind is TokenKind.EXPIRING:
        if refresh_token is None:
            raise oauth.TokenRefused("no refresh token stored", 0)
        return _pair(oauth.refresh(shop.domain, refresh_token))
    if shop.token_kind is TokenKind.CLIENT_CREDENTIALS:
        return _pair(oauth.client_credentials(shop.domain))
    raise oauth.TokenRefused("a static token cannot be refreshed", 0)


class ShopTokens:
    """The ``TokenSource`` of one shop for one apply run (``workers.shopify.client``)."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    def current(self) -> str:
        check_installed(self.shop)
        # The machine's clock, not a database round trip per call: the margin dwarfs any skew.
        if self.shop.refresh_due(datetime.now(UTC)):
            return self._refresh("expiring")
        assert self.shop.access_token is not None
        return self.shop.access_token

    def after_unauthorized(self, rejected: str) -> str:
        """Shopify answered 401 to ``rejected``: one refresh (or the pair another worker already
        refreshed), to be tried once. A static token has nothing to fall back on."""
        if self.shop.token_kind is TokenKind.STATIC:
            raise Unauthorized(401)
        if self.shop.access_token != rejected:
            return self.current()
        return self._refresh("refused with HTTP 401")

    def _refresh(self, why: str) -> str:
        shop = self.shop
        try:
            fresh = shops.refresh_locked(shop.id, shop.token_version, _obtain)
        except oauth.TokenRefused as exc:
            detail = f"Shopify refused to refresh the access token: {exc.error}"
            shops.mark_needs_reinstall(shop.id, detail)
            log.warning("shop %s: %s; parked until a reinstall", shop.domain, detail)
            raise AccessLost(lost_detail(shop, f"shop needs reinstall ({detail})")) from None
        except oauth.TokenUnavailable as exc:
            # Transient: the run is a failed attempt, retried; the stored refresh token still works.
            raise ShopifyUnavailable(f"token refresh for {shop.domain}: {exc}") from None
        if fresh.token_version != shop.token_version:
            log.info(
                "shop %s: access token %s (%s)",
                shop.domain,
                "refreshed" if fresh.token_version else "read",
                why,
            )
        self.shop = fresh
        check_installed(fresh)
        assert fresh.access_token is not None
        return fresh.access_token


def refresh_idle(shop_id: int) -> None:
    """The beat's refresh of an idle shop whose refresh token nears its end (errors are logged)."""
    shop = shops.get_shop(shop_id)
    try:
        ShopTokens(shop)._refresh("refresh token nearing its end")
    except (AccessLost, ShopifyUnavailable) as exc:
        log.warning("shop %s: idle refresh failed: %s", shop.domain, exc)
