"""Shopify's app side, over HTTP: the install redirect, callback and webhook signatures, and the
token endpoint (authorization code, refresh, client credentials). Reference: APP-AUTH.md.

Pure protocol: it knows URLs, parameters and error shapes, nothing of our rows. Tokens, codes and
secrets never appear in an exception message or a log line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import requests

from config import get_settings
from workers.shopify.client import get_session

log = logging.getLogger(__name__)

# APP-AUTH.md §2.4: both anchors, or "demo.myshopify.com.evil.test" passes.
SHOP_DOMAIN = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9-]*\.myshopify\.com")
# Shopify's JS library refuses callbacks more than 90 s from now (library policy).
CALLBACK_MAX_AGE_S = 90


def valid_shop_domain(shop: str | None) -> bool:
    return shop is not None and SHOP_DOMAIN.fullmatch(shop) is not None


def admin_url(shop: str, path: str) -> str:
    """``https://{shop}/admin/<path>`` (or the stand-in's, by ``SHOPIFY_ADMIN_URL_TEMPLATE``)."""
    return get_settings().shopify_admin_url_template.format(shop=shop) + path


def authorize_url(shop: str, *, client_id: str, scopes: Sequence[str], redirect_uri: str, state: str) -> str:
    """Where the merchant grants the app its scopes (offline access: no ``grant_options[]``)."""
    query = urlencode(
        {"client_id": client_id, "scope": ",".join(scopes), "redirect_uri": redirect_uri, "state": state}
    )
    return f"{admin_url(shop, '/oauth/authorize')}?{query}"


def _query_message(params: Mapping[str, str]) -> bytes:
    # APP-AUTH.md §2.4: drop hmac/signature, sort, k=v joined by &, values percent-encoded.
    pairs = sorted((k, v) for k, v in params.items() if k not in ("hmac", "signature"))
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in pairs).encode()


def query_hmac_ok(params: Mapping[str, str], secrets: Iterable[str]) -> bool:
    """The ``hmac`` of an install or callback query, checked against every secret (rotation)."""
    given = params.get("hmac", "")
    message = _query_message(params)
    ok = False
    for secret in secrets:
        digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
        ok |= hmac.compare_digest(given.encode(), digest.encode())
    return ok


def callback_fresh(params: Mapping[str, str], now: float | None = None) -> bool:
    try:
        stamp = int(params.get("timestamp", ""))
    except ValueError:
        return False
    return abs((time.time() if now is None else now) - stamp) <= CALLBACK_MAX_AGE_S


def webhook_hmac_ok(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """``X-Shopify-Hmac-Sha256``: base64 HMAC-SHA256 of the raw body with the client secret."""
    if not header:
        return False
    ok = False
    for secret in secrets:
        digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
        ok |= hmac.compare_digest(header.strip().encode(), digest)
    return ok


# --- the token endpoint --------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenGrant:
    """One answer of the token endpoint. Expiries are seconds from when it was received."""

    access_token: str = field(repr=False)
    scopes: tuple[str, ...]
    expires_in_s: int | None = None
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_in_s: int | None = None

    @property
    def expiring(self) -> bool:
        return self.expires_in_s is not None


class TokenRefused(Exception):
    """Shopify said no for good (``invalid_grant``, ``invalid_client``, a bad code): only a
    (re)install brings access back."""

    def __init__(self, error: str, http_status: int) -> None:
        super().__init__(f"Shopify's token endpoint refused: {error} (HTTP {http_status})")
        self.error = error
        self.http_status = http_status


class TokenUnavailable(Exception):
    """No answer, a 5xx or a 429: try again with the same grant (a lost refresh answer is covered
    by Shopify keeping the previous refresh token usable until its replacement is used)."""


_TERMINAL = ("invalid_grant", "invalid_client", "invalid_request", "unauthorized_client")


def _request_token(shop: str, fields: dict[str, Any], attempts: int = 3) -> TokenGrant:
    settings = get_settings()
    url = admin_url(shop, "/oauth/access_token")
    timeout = (settings.shopify_connect_timeout_s, settings.shopify_read_timeout_s)
    last: str = ""
    for attempt in range(1, attempts + 1):
        try:
            response = get_session().post(
                url, json=fields, timeout=timeout, headers={"Accept": "application/json"}
            )
        except requests.RequestException as exc:
            last = type(exc).__name__
        else:
            if response.status_code < 300:
                return _grant(response)
            body = _json(response)
            error = str(body.get("error") or "")
            if response.status_code in (400, 401, 403) or error in _TERMINAL:
                raise TokenRefused(error or f"HTTP {response.status_code}", response.status_code)
            last = f"HTTP {response.status_code}"
        if attempt < attempts:
            # Same grant again (APP-AUTH.md §3: network errors, timeouts, 429 and 5xx retry).
            time.sleep(min(2.0, 0.2 * 2 ** (attempt - 1)))
    raise TokenUnavailable(f"Shopify's token endpoint did not answer ({last}) after {attempts} attempts")


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _grant(response: requests.Response) -> TokenGrant:
    body = _json(response)
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenUnavailable("the token endpoint answered without an access token")

    def seconds(name: str) -> int | None:
        value = body.get(name)
        return int(value) if isinstance(value, int | float | str) and str(value).isdigit() else None

    return TokenGrant(
        access_token=token,
        scopes=tuple(s.strip() for s in str(body.get("scope") or "").split(",") if s.strip()),
        expires_in_s=seconds("expires_in"),
        refresh_token=body.get("refresh_token") or None,
        refresh_expires_in_s=seconds("refresh_token_expires_in"),
    )


def exchange_code(shop: str, code: str) -> TokenGrant:
    """The install's code for an *expiring* offline token pair (``expiring=1``)."""
    settings = get_settings()
    return _request_token(
        shop,
        {
            "client_id": settings.shopify_client_id,
            "client_secret": settings.shopify_client_secrets[0],
            "code": code,
            "expiring": "1",
        },
        attempts=1,  # a code is single use: a lost answer cannot be asked again
    )


def refresh(shop: str, refresh_token: str) -> TokenGrant:
    settings = get_settings()
    return _request_token(
        shop,
        {
            "client_id": settings.shopify_client_id,
            "client_secret": settings.shopify_client_secrets[0],
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        },
    )


def client_credentials(shop: str) -> TokenGrant:
    settings = get_settings()
    return _request_token(
        shop,
        {
            "client_id": settings.shopify_client_id,
            "client_secret": settings.shopify_client_secrets[0],
            "grant_type": "client_credentials",
        },
    )
