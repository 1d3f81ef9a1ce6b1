"""Shopify's app side: Dev Dashboard apps, OAuth authorize, the token endpoint and its tokens.

Transport-free (server.py does HTTP). One lock guards every app, code and token, so the token
endpoint's rules (rotation, the grace of the previous refresh token, uninstall) are atomic.

Rules (APP-AUTH.md §2-4, choices where it is unclear are marked "chosen"):
- authorize approves at once; the callback carries code, hmac, host, shop, state, timestamp;
  hmac = hex HMAC-SHA256 (the app's current secret) of the sorted `k=v` pairs joined with `&`,
  percent-encoded as Shopify's JS library does (URLSearchParams, spaces as %20).
- a code is single use and lives 10 minutes; exchanging one replaces the app's pair on the shop.
- refresh rotates the pair. The previous refresh token stays usable until its replacement is
  first presented to the token endpoint (chosen trigger), at most 30 days after its own first
  use and never past its expiry; presenting it again while usable issues a fresh pair and retires
  the unused refresh token it had issued before. Each refresh token gets the app's full
  `refresh_token_ttl_s` (chosen). The access token of a replaced pair stays valid until its own
  expiry, except after a new code exchange or an uninstall, which revoke at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

CODE_TTL_S = 600.0
GRACE_MAX_S = 30 * 86400.0
TOKEN_LOG_LIMIT = 20_000
DEFAULT_APP_SCOPES: tuple[str, ...] = ("read_orders", "write_orders", "read_returns", "write_returns")
CLIENT_CREDENTIALS = "client_credentials"
AUTHORIZATION_CODE = "authorization_code"
REFRESH_TOKEN = "refresh_token"


def js_query_encode(value: str) -> str:
    """Percent-encode like `URLSearchParams.toString()` + `.replace(/\\+/g, '%20')` (Shopify's JS
    library, ProcessedQuery): only ASCII letters, digits and `*-._` stay as they are."""
    out = []
    for byte in value.encode():
        char = chr(byte)
        if char.isascii() and (char.isalnum() or char in "*-._"):
            out.append(char)
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def oauth_hmac(params: dict[str, str], secret: str) -> str:
    """The hmac of an OAuth callback (APP-AUTH.md §2 step 4)."""
    message = "&".join(
        f"{js_query_encode(k)}={js_query_encode(v)}"
        for k, v in sorted(params.items())
        if k not in ("hmac", "signature")
    )
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def admin_host(shop_domain: str) -> str:
    """`host` of a callback: base64 of admin.shopify.com/store/<name>, unpadded as Shopify sends it."""
    name = shop_domain.split(".", 1)[0]
    return base64.b64encode(f"admin.shopify.com/store/{name}".encode()).decode().rstrip("=")


def _split_scopes(value: Any) -> list[str]:
    if value is None:
        return []
    parts = value if isinstance(value, list) else str(value).split(",")
    out: list[str] = []
    for part in parts:
        scope = str(part).strip()
        if scope and scope not in out:
            out.append(scope)
    return out


@dataclass
class TokenFaults:
    lost_response_next: int = 0
    error_next: int = 0
    error_status: int = 503


@dataclass
class App:
    client_id: str
    client_secrets: list[str]
    token_ttl_s: float = 3600
    refresh_token_ttl_s: float = 7776000
    client_credentials_ttl_s: float = 86399
    webhooks_uri: str | None = None
    compliance_uri: str | None = None
    scopes: list[str] = field(default_factory=lambda: list(DEFAULT_APP_SCOPES))
    redirect_urls: list[str] | None = None
    api_version: str = "2026-07"
    faults: TokenFaults = field(default_factory=TokenFaults)
    token_requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=TOKEN_LOG_LIMIT))

    @property
    def secret(self) -> str:
        """The current secret: Shopify signs callbacks and webhooks with it."""
        return self.client_secrets[0]

    def view(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "secrets": len(self.client_secrets),
            "token_ttl_s": self.token_ttl_s,
            "refresh_token_ttl_s": self.refresh_token_ttl_s,
            "client_credentials_ttl_s": self.client_credentials_ttl_s,
            "webhooks_uri": self.webhooks_uri,
            "compliance_uri": self.compliance_uri,
            "scopes": list(self.scopes),
            "redirect_urls": self.redirect_urls,
            "api_version": self.api_version,
        }


@dataclass(eq=False)
class AccessToken:
    value: str
    client_id: str
    shop: str
    scopes: tuple[str, ...]
    grant: str
    expires_at: float | None  # None: non-expiring
    revoked: bool = False


@dataclass(eq=False)
class RefreshToken:
    value: str
    client_id: str
    shop: str
    expires_at: float
    state: str = "current"  # current | previous | retired
    first_used_at: float | None = None


@dataclass(eq=False)
class Installation:
    """One app on one shop: what was granted and the live refresh tokens."""

    client_id: str
    shop: str
    scopes: list[str] = field(default_factory=list)
    installed: bool = True
    current: RefreshToken | None = None
    previous: RefreshToken | None = None


@dataclass(eq=False)
class AuthCode:
    value: str
    client_id: str
    shop: str
    scopes: list[str]
    expires_at: float
    used: bool = False


@dataclass
class TokenAnswer:
    status: int
    body: dict[str, Any]
    lose_response: bool = False  # processed, then the connection is dropped without an answer


@dataclass
class Grant:
    """What an Admin API token may do."""

    scopes: frozenset[str]
    client_id: str | None = None  # None: a legacy token made with POST /_standin/shops or /scopes


class AppRegistry:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.apps: dict[str, App] = {}
        self.installations: dict[tuple[str, str], Installation] = {}
        self.access_tokens: dict[str, AccessToken] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.codes: dict[str, AuthCode] = {}
        self.grant_limits: dict[str, list[str]] = {}
        self.own_store_apps: dict[str, set[str]] = {}

    def reset(self) -> None:
        with self.lock:
            for table in (
                self.apps,
                self.installations,
                self.access_tokens,
                self.refresh_tokens,
                self.codes,
                self.grant_limits,
                self.own_store_apps,
            ):
                table.clear()

    # --- registration --------------------------------------------------------------------------

    def register(self, spec: dict[str, Any]) -> App:
        client_id = str(spec["client_id"])
        client_secrets = [str(s) for s in spec.get("client_secrets") or []]
        if not client_id or not client_secrets:
            raise ValueError("an app needs a client_id and at least one client secret")
        app = App(
            client_id=client_id,
            client_secrets=client_secrets,
            token_ttl_s=float(spec.get("token_ttl_s", 3600)),
            refresh_token_ttl_s=float(spec.get("refresh_token_ttl_s", 7776000)),
            client_credentials_ttl_s=float(spec.get("client_credentials_ttl_s", 86399)),
            webhooks_uri=spec.get("webhooks_uri"),
            compliance_uri=spec.get("compliance_uri"),
            scopes=_split_scopes(spec.get("scopes")) or list(DEFAULT_APP_SCOPES),
            redirect_urls=list(spec["redirect_urls"]) if spec.get("redirect_urls") else None,
            api_version=str(spec.get("api_version") or "2026-07"),
        )
        with self.lock:
            old = self.apps.get(client_id)
            if old is not None:  # re-registering (e.g. a secret rotation) keeps the log and faults
                app.faults, app.token_requests = old.faults, old.token_requests
            self.apps[client_id] = app
        return app

    def app(self, client_id: str) -> App | None:
        return self.apps.get(client_id)

    def set_grant_limit(self, shop: str, scopes: list[str] | None) -> None:
        with self.lock:
            if scopes is None:
                self.grant_limits.pop(shop, None)
            else:
                self.grant_limits[shop] = _split_scopes(scopes)

    def set_own_store_apps(self, shop: str, client_ids: list[str]) -> None:
        with self.lock:
            self.own_store_apps[shop] = {str(c) for c in client_ids}

    def set_faults(self, client_id: str, spec: dict[str, Any]) -> TokenFaults:
        app = self._require(client_id)
        with self.lock:
            faults = app.faults
            if "lost_response_next" in spec:
                faults.lost_response_next = max(0, int(spec["lost_response_next"] or 0))
            if "error_next" in spec:
                faults.error_next = max(0, int(spec["error_next"] or 0))
            if spec.get("error_status") is not None:
                faults.error_status = int(spec["error_status"])
            return faults

    def _require(self, client_id: str) -> App:
        app = self.apps.get(client_id)
        if app is None:
            raise KeyError(f"unknown app {client_id}")
        return app

    def _granted(self, shop: str, requested: list[str]) -> list[str]:
        limit = self.grant_limits.get(shop)
        return list(requested) if limit is None else [s for s in requested if s in limit]

    # --- authorize -------------------------------------------------------------------------------

    def authorize(self, shop: str, params: dict[str, str]) -> tuple[str | None, str | None]:
        """The merchant approves at once. Returns (redirect URL, None) or (None, error text)."""
        app = self.apps.get(params.get("client_id") or "")
        if app is None:
            return None, "Oauth error invalid_request: The client_id is invalid or missing"
        redirect_uri = params.get("redirect_uri") or ""
        if not redirect_uri:
            return None, "Oauth error invalid_request: The redirect_uri is missing"
        if app.redirect_urls is not None and redirect_uri not in app.redirect_urls:
            return None, "Oauth error invalid_request: The redirect_uri is not whitelisted"
        code = AuthCode(
            value=secrets.token_hex(16),
            client_id=app.client_id,
            shop=shop,
            scopes=self._granted(shop, _split_scopes(params.get("scope"))),
            expires_at=time.time() + CODE_TTL_S,
        )
        with self.lock:
            self.codes[code.value] = code
        callback = {
            "code": code.value,
            "host": admin_host(shop),
            "shop": shop,
            "timestamp": str(int(time.time())),
        }
        if params.get("state") is not None:
            callback["state"] = params["state"]
        callback["hmac"] = oauth_hmac(callback, app.secret)
        query = "&".join(f"{js_query_encode(k)}={js_query_encode(v)}" for k, v in sorted(callback.items()))
        return redirect_uri + ("&" if "?" in redirect_uri else "?") + query, None

    # --- the token endpoint ---------------------------------------------------------------------

    def token_request(self, shop: str, params: dict[str, Any]) -> TokenAnswer:
        app = self.apps.get(str(params.get("client_id") or ""))
        if app is None:
            return TokenAnswer(401, {"error": "invalid_client"})
        grant_type = str(params.get("grant_type") or (AUTHORIZATION_CODE if "code" in params else ""))
        with self.lock:
            presented = self._classify(app, shop, params) if grant_type == REFRESH_TOKEN else None
            if app.faults.error_next > 0:
                app.faults.error_next -= 1
                self._record(app, shop, grant_type, "fault_error", presented)
                return TokenAnswer(app.faults.error_status, {"errors": "Service Unavailable"})
            lose = app.faults.lost_response_next > 0
            if lose:
                app.faults.lost_response_next -= 1
            answer, outcome = self._process(app, shop, grant_type, params)
            if lose:
                self._record(app, shop, grant_type, "fault_lost", presented, processed=outcome)
                answer.lose_response = True
            else:
                self._record(app, shop, grant_type, outcome, presented)
            return answer

    def _record(
        self,
        app: App,
        shop: str,
        grant_type: str,
        outcome: str,
        presented: str | None,
        processed: str | None = None,
    ) -> None:
        entry: dict[str, Any] = {
            "at": time.time(),
            "shop": shop,
            "grant_type": grant_type or None,
            "outcome": outcome,
            "refresh_token_presented_was": presented,
        }
        if processed is not None:
            entry["processed_outcome"] = processed
        app.token_requests.append(entry)

    def _classify(self, app: App, shop: str, params: dict[str, Any]) -> str:
        token = self.refresh_tokens.get(str(params.get("refresh_token") or ""))
        if token is None or token.client_id != app.client_id or token.shop != shop:
            return "unknown"
        if token.state == "previous" and not self._previous_usable(token, time.time()):
            return "retired"
        return token.state

    @staticmethod
    def _previous_usable(token: RefreshToken, now: float) -> bool:
        limit = token.expires_at
        if token.first_used_at is not None:
            limit = min(limit, token.first_used_at + GRACE_MAX_S)
        return now < limit

    def _process(
        self, app: App, shop: str, grant_type: str, params: dict[str, Any]
    ) -> tuple[TokenAnswer, str]:
        if str(params.get("client_secret") or "") not in app.client_secrets:
            return TokenAnswer(401, {"error": "invalid_client"}), "invalid_client"
        install = self.installations.get((app.client_id, shop))
        if grant_type == AUTHORIZATION_CODE:
            return self._exchange_code(app, shop, params)
        if install is not None and not install.installed:
            return TokenAnswer(401, {"error": "invalid_client"}), "invalid_client"
        if grant_type == REFRESH_TOKEN:
            return self._refresh(app, shop, install, params)
        if grant_type == CLIENT_CREDENTIALS:
            return self._client_credentials(app, shop)
        return (
            TokenAnswer(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"grant_type {grant_type or '(none)'} is not modelled",
                },
            ),
            "invalid_request",
        )

    def _exchange_code(self, app: App, shop: str, params: dict[str, Any]) -> tuple[TokenAnswer, str]:
        now = time.time()
        code = self.codes.get(str(params.get("code") or ""))
        if (
            code is None
            or code.used
            or code.client_id != app.client_id
            or code.shop != shop
            or now >= code.expires_at
        ):
            # Not recorded; the usual OAuth wording.
            body = {
                "error": "invalid_request",
                "error_description": "The authorization code was not found or was already used",
            }
            return TokenAnswer(400, body), "invalid_request"
        code.used = True
        install = self.installations.get((app.client_id, shop))
        if install is None:
            install = self.installations[(app.client_id, shop)] = Installation(app.client_id, shop)
        # A new acquisition replaces the pair: the old refresh tokens retire, access tokens die.
        self._revoke(app.client_id, shop, keep_client_credentials=True)
        install.installed, install.scopes = True, list(code.scopes)
        expiring = str(params.get("expiring", "0")).strip().lower() in ("1", "true")
        if not expiring:
            access = self._new_access(app, shop, install.scopes, AUTHORIZATION_CODE, None)
            body = {"access_token": access.value, "scope": ",".join(install.scopes)}
            return TokenAnswer(200, body), "issued"
        return TokenAnswer(200, self._new_pair(app, install, AUTHORIZATION_CODE)), "issued"

    def _refresh(
        self, app: App, shop: str, install: Installation | None, params: dict[str, Any]
    ) -> tuple[TokenAnswer, str]:
        now = time.time()
        token = self.refresh_tokens.get(str(params.get("refresh_token") or ""))
        description = "The refresh token is invalid, expired or revoked"  # not recorded
        invalid = TokenAnswer(400, {"error": "invalid_grant", "error_description": description})
        if install is None or token is None or token.client_id != app.client_id or token.shop != shop:
            return invalid, "invalid_grant"
        if token.state == "retired" or now >= token.expires_at:
            return invalid, "invalid_grant"
        if token.state == "current":
            # First use of the replacement: the previous one retires, this one becomes previous.
            if install.previous is not None:
                install.previous.state = "retired"
            token.state, token.first_used_at = "previous", now
            install.previous = token
        elif token.state == "previous":
            if not self._previous_usable(token, now):
                token.state = "retired"
                install.previous = None
                return invalid, "invalid_grant"
            # Re-use while still usable: the unused replacement it had issued retires.
            if install.current is not None:
                install.current.state = "retired"
        return TokenAnswer(200, self._new_pair(app, install, REFRESH_TOKEN)), "issued"

    def _client_credentials(self, app: App, shop: str) -> tuple[TokenAnswer, str]:
        if app.client_id not in self.own_store_apps.get(shop, set()):
            body = {
                "error": "invalid_client",
                "error_description": "Client credentials are only for apps of the store's organization",
            }
            return TokenAnswer(400, body), "invalid_client"
        install = self.installations.get((app.client_id, shop))
        if install is None:
            install = self.installations[(app.client_id, shop)] = Installation(
                app.client_id, shop, scopes=self._granted(shop, app.scopes)
            )
        scopes = install.scopes or self._granted(shop, app.scopes)
        access = self._new_access(
            app, shop, scopes, CLIENT_CREDENTIALS, time.time() + app.client_credentials_ttl_s
        )
        body = {
            "access_token": access.value,
            "scope": ",".join(scopes),
            "expires_in": int(app.client_credentials_ttl_s),
        }
        return TokenAnswer(200, body), "issued"

    def _new_access(
        self, app: App, shop: str, scopes: list[str], grant: str, expires_at: float | None
    ) -> AccessToken:
        token = AccessToken(
            value="shpat_" + secrets.token_hex(16),
            client_id=app.client_id,
            shop=shop,
            scopes=tuple(scopes),
            grant=grant,
            expires_at=expires_at,
        )
        self.access_tokens[token.value] = token
        return token

    def _new_pair(self, app: App, install: Installation, grant: str) -> dict[str, Any]:
        now = time.time()
        access = self._new_access(app, install.shop, install.scopes, grant, now + app.token_ttl_s)
        refresh = RefreshToken(
            value="shprt_" + secrets.token_hex(16),
            client_id=app.client_id,
            shop=install.shop,
            expires_at=now + app.refresh_token_ttl_s,
        )
        self.refresh_tokens[refresh.value] = refresh
        install.current = refresh
        return {
            "access_token": access.value,
            "scope": ",".join(install.scopes),
            "expires_in": int(app.token_ttl_s),
            "refresh_token": refresh.value,
            "refresh_token_expires_in": int(app.refresh_token_ttl_s),
        }

    def _revoke(self, client_id: str, shop: str, keep_client_credentials: bool) -> tuple[int, int]:
        revoked_access = revoked_refresh = 0
        for token in self.access_tokens.values():
            if token.client_id != client_id or token.shop != shop or token.revoked:
                continue
            if keep_client_credentials and token.grant == CLIENT_CREDENTIALS:
                continue
            token.revoked = True
            revoked_access += 1
        for refresh in self.refresh_tokens.values():
            if refresh.client_id == client_id and refresh.shop == shop and refresh.state != "retired":
                refresh.state = "retired"
                revoked_refresh += 1
        install = self.installations.get((client_id, shop))
        if install is not None:
            install.current = install.previous = None
        return revoked_access, revoked_refresh

    # --- uninstall and Admin API auth -----------------------------------------------------------

    def uninstall(self, client_id: str, shop: str) -> dict[str, int]:
        self._require(client_id)
        with self.lock:
            revoked_access, revoked_refresh = self._revoke(client_id, shop, keep_client_credentials=False)
            for code in self.codes.values():
                if code.client_id == client_id and code.shop == shop:
                    code.used = True
            install = self.installations.get((client_id, shop))
            if install is None:
                install = self.installations[(client_id, shop)] = Installation(client_id, shop)
            install.installed = False
        return {"revoked_access_tokens": revoked_access, "revoked_refresh_tokens": revoked_refresh}

    def grant_for(self, shop: str, value: str) -> tuple[Grant | None, str | None]:
        """An app-issued access token's grant on `shop`, or (None, why it is refused)."""
        token = self.access_tokens.get(value)
        if token is None or token.shop != shop:
            return None, "unknown"
        if token.revoked:
            return None, "revoked"
        if token.expires_at is not None and time.time() >= token.expires_at:
            return None, "expired"
        return Grant(scopes=frozenset(token.scopes), client_id=token.client_id), None

    def installation_view(self, shop: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"client_id": i.client_id, "installed": i.installed, "scopes": list(i.scopes)}
                for (_c, s), i in sorted(self.installations.items())
                if s == shop
            ]
