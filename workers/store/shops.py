"""Shops: the Shopify stores the sync writes to, how the app is installed on each, and its access.

A shop's tokens are stored encrypted (``workers.store.crypto``) and written only here: by an
install (``install``), by ``register_shop`` for a legacy static token, and by ``refresh_locked``,
which holds the shop's row lock while a new pair is obtained, so exactly one refresh per shop runs
at a time across every worker and machine, and a worker that waited finds the new pair instead of
refreshing again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from config import get_settings
from config.settings import REQUIRED_SCOPES
from workers.store import crypto
from workers.store.db import single_statement, transaction

__all__ = [
    "REQUIRED_SCOPES",
    "Shop",
    "ShopStatus",
    "TokenKind",
    "TokenPair",
    "find_shop",
    "get_shop",
    "install",
    "record_scopes",
    "refresh_locked",
    "register_shop",
]


class ShopStatus(StrEnum):
    ACTIVE = "active"
    NEEDS_REINSTALL = "needs_reinstall"  # scopes missing, or the token (pair) refused for good
    UNINSTALLED = "uninstalled"  # app/uninstalled: no token at all until a reinstall


class TokenKind(StrEnum):
    STATIC = "static"  # a legacy custom-app token: never expires, never refreshes
    EXPIRING = "expiring"  # an expiring offline token with a rotating refresh token
    CLIENT_CREDENTIALS = "client_credentials"  # a Dev Dashboard app on our own store: ask again


@dataclass(frozen=True)
class TokenPair:
    """A new access token (and, for expiring tokens, its refresh token), as obtained from Shopify."""

    access_token: str = field(repr=False)
    scopes: tuple[str, ...]
    access_expires_in_s: int | None = None
    refresh_token: str | None = field(default=None, repr=False)
    refresh_expires_in_s: int | None = None


@dataclass(frozen=True)
class Shop:
    id: int
    domain: str
    access_token: str | None = field(repr=False)
    api_version: str
    api_url: str | None = None
    tag_language: str = "en"
    reason_overrides: dict[str, str] = field(default_factory=dict)
    granted_scopes: tuple[str, ...] | None = None
    missing_scopes: tuple[str, ...] = ()
    waiting_horizon_s: int = 14 * 24 * 3600
    status: ShopStatus = ShopStatus.ACTIVE
    status_detail: str | None = None
    token_kind: TokenKind = TokenKind.STATIC
    access_expires_at: datetime | None = None
    token_version: int = 0
    token_refreshed_at: datetime | None = None

    @property
    def graphql_url(self) -> str:
        template = self.api_url or get_settings().shopify_url_template
        return template.format(shop=self.domain, version=self.api_version)

    @property
    def needs_reinstall(self) -> bool:
        return self.status is not ShopStatus.ACTIVE or bool(self.missing_scopes)

    @property
    def install_link(self) -> str:
        return install_link(self.domain)

    def __repr__(self) -> str:  # what a log line needs; never a token
        return f"Shop(id={self.id}, domain={self.domain!r}, status={self.status}, kind={self.token_kind})"

    def refresh_due(self, now: datetime) -> bool:
        """An expiring token close enough to its end to refresh before use: a quarter of its life
        or ``TOKEN_REFRESH_AHEAD_S``, whichever is shorter (a 2-minute demo token must not count
        as always expiring)."""
        if self.token_kind is TokenKind.STATIC or self.access_expires_at is None:
            return False
        ahead = timedelta(seconds=get_settings().token_refresh_ahead_s)
        if self.token_refreshed_at is not None:
            ahead = min(ahead, (self.access_expires_at - self.token_refreshed_at) / 4)
        return now >= self.access_expires_at - ahead


def install_link(domain: str) -> str:
    """Where a merchant (re)installs the app: the answer to *needs reinstall*."""
    return f"{get_settings().app_url.rstrip('/')}/shopify/install?shop={domain}"


def _from_row(row: Mapping[str, Any]) -> Shop:
    return Shop(
        id=row["id"],
        domain=row["domain"],
        access_token=crypto.decrypt(row["access_token_enc"]) if row["access_token_enc"] else None,
        api_version=row["api_version"],
        api_url=row["api_url"],
        tag_language=row["tag_language"],
        reason_overrides=dict(row["reason_overrides"] or {}),
        granted_scopes=tuple(row["granted_scopes"]) if row["granted_scopes"] is not None else None,
        missing_scopes=tuple(row["missing_scopes"] or ()),
        waiting_horizon_s=row["waiting_horizon_s"],
        status=ShopStatus(row["status"]),
        status_detail=row["status_detail"],
        token_kind=TokenKind(row["token_kind"]),
        access_expires_at=row["access_expires_at"],
        token_version=row["token_version"],
        token_refreshed_at=row["token_refreshed_at"],
    )


def _missing(granted: tuple[str, ...] | list[str]) -> list[str]:
    # A write scope implies its read scope (APP-AUTH.md §2.5).
    have = set(granted) | {
        scope.replace("write_", "read_", 1) for scope in granted if scope.startswith("write_")
    }
    return [scope for scope in REQUIRED_SCOPES if scope not in have]


def register_shop(
    domain: str,
    access_token: str,
    *,
    api_url: str | None = None,
    api_version: str | None = None,
    tag_language: str = "en",
    reason_overrides: dict[str, str] | None = None,
    waiting_horizon_s: int | None = None,
) -> Shop:
    """Create or update a shop with a static (legacy custom-app) token. A new token clears the
    needs-reinstall mark: its scopes are read on first contact."""
    settings = get_settings()
    with transaction() as cur:
        cur.execute(
            """
            INSERT INTO shops (domain, access_token_enc, api_url, api_version, tag_language,
                               reason_overrides, waiting_horizon_s, token_kind)
            VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, 'static')
            ON CONFLICT (domain) DO UPDATE SET
                access_token_enc = EXCLUDED.access_token_enc, api_url = EXCLUDED.api_url,
                api_version = EXCLUDED.api_version, tag_language = EXCLUDED.tag_language,
                reason_overrides = EXCLUDED.reason_overrides,
                waiting_horizon_s = EXCLUDED.waiting_horizon_s,
                token_kind = 'static', access_expires_at = NULL, refresh_token_enc = NULL,
                refresh_expires_at = NULL, token_version = shops.token_version + 1,
                status = 'active', status_detail = NULL,
                granted_scopes = NULL, missing_scopes = '{}', updated_at = now()
            RETURNING *
            """,
            (
                domain,
                crypto.encrypt(access_token),
                api_url,
                api_version or settings.shopify_api_version,
                tag_language,
                json.dumps(reason_overrides or {}),
                waiting_horizon_s if waiting_horizon_s is not None else settings.waiting_horizon_s,
            ),
        )
        row = cur.fetchone()
    assert row is not None
    return _from_row(row)


def install(domain: str, kind: TokenKind, pair: TokenPair) -> Shop:
    """Record an (re)install: the shop active with its new token pair and granted scopes."""
    settings = get_settings()
    missing = _missing(pair.scopes)
    status = ShopStatus.NEEDS_REINSTALL if missing else ShopStatus.ACTIVE
    detail = f"the install granted no {', '.join(missing)}" if missing else None
    with transaction() as cur:
        cur.execute(
            """
            INSERT INTO shops (domain, api_version, waiting_horizon_s, token_kind, access_token_enc,
                               access_expires_at, refresh_token_enc, refresh_expires_at, token_version,
                               token_refreshed_at, granted_scopes, missing_scopes, status, status_detail,
                               installed_at, uninstalled_at)
            VALUES (%(domain)s, %(version)s, %(horizon)s, %(kind)s, %(access)s,
                    now() + %(access_in)s * interval '1 second', %(refresh)s,
                    now() + %(refresh_in)s * interval '1 second', 1, now(), %(granted)s, %(missing)s,
                    %(status)s, %(detail)s, now(), NULL)
            ON CONFLICT (domain) DO UPDATE SET
                token_kind = EXCLUDED.token_kind, access_token_enc = EXCLUDED.access_token_enc,
                access_expires_at = EXCLUDED.access_expires_at,
                refresh_token_enc = EXCLUDED.refresh_token_enc,
                refresh_expires_at = EXCLUDED.refresh_expires_at,
                token_version = shops.token_version + 1, token_refreshed_at = now(),
                granted_scopes = EXCLUDED.granted_scopes, missing_scopes = EXCLUDED.missing_scopes,
                status = EXCLUDED.status, status_detail = EXCLUDED.status_detail,
                installed_at = now(), uninstalled_at = NULL, redacted_at = NULL, updated_at = now()
            RETURNING *
            """,
            {
                "domain": domain,
                "version": settings.shopify_api_version,
                "horizon": settings.waiting_horizon_s,
                "kind": kind,
                "access": crypto.encrypt(pair.access_token),
                "access_in": pair.access_expires_in_s,
                "refresh": crypto.encrypt(pair.refresh_token) if pair.refresh_token else None,
                "refresh_in": pair.refresh_expires_in_s,
                "granted": sorted(pair.scopes),
                "missing": missing,
                "status": status,
                "detail": detail,
            },
        )
        row = cur.fetchone()
    assert row is not None
    return _from_row(row)


def refresh_locked(shop_id: int, seen_version: int, obtain: Callable[[Shop, str | None], TokenPair]) -> Shop:
    """Replace the shop's token pair with ``obtain(shop, refresh_token)``, under the shop's row lock.

    Whoever takes the lock second re-reads the row: if the pair changed since ``seen_version``
    (another worker refreshed while we waited) and is not itself due, that pair is returned and
    ``obtain`` is never called. The new pair is committed before anyone uses it. An exception from
    ``obtain`` (Shopify refused, or no answer) changes nothing.
    """
    with transaction() as cur:
        # Bounded: a refresher stuck on a dead connection must not park every worker of the shop.
        cur.execute("SET LOCAL lock_timeout = '30s'")
        cur.execute("SELECT * FROM shops WHERE id = %s FOR UPDATE", (shop_id,))
        row = cur.fetchone()
        if row is None:
            raise LookupError(f"no shop with id {shop_id}")
        shop = _from_row(row)
        cur.execute("SELECT now() AS now")
        now_row = cur.fetchone()
        assert now_row is not None
        if shop.token_version != seen_version and shop.access_token and not shop.refresh_due(now_row["now"]):
            return shop
        refresh_token = crypto.decrypt(row["refresh_token_enc"]) if row["refresh_token_enc"] else None
        pair = obtain(shop, refresh_token)
        cur.execute(
            """
            UPDATE shops SET access_token_enc = %s,
                access_expires_at = now() + %s * interval '1 second',
                refresh_token_enc = COALESCE(%s, refresh_token_enc),
                refresh_expires_at = COALESCE(now() + %s * interval '1 second', refresh_expires_at),
                token_version = token_version + 1, token_refreshed_at = now(), updated_at = now()
            WHERE id = %s
            RETURNING *
            """,
            (
                crypto.encrypt(pair.access_token),
                pair.access_expires_in_s,
                crypto.encrypt(pair.refresh_token) if pair.refresh_token else None,
                pair.refresh_expires_in_s,
                shop_id,
            ),
        )
        updated = cur.fetchone()
    assert updated is not None
    return _from_row(updated)


def mark_needs_reinstall(shop_id: int, detail: str) -> None:
    """The shop's access is refused for good: it waits for a reinstall (its events wait too)."""
    with transaction() as cur:
        cur.execute(
            "UPDATE shops SET status = 'needs_reinstall', status_detail = %s, updated_at = now()"
            " WHERE id = %s AND status <> 'uninstalled'",
            (detail, shop_id),
        )


def mark_uninstalled(domain: str) -> int | None:
    """app/uninstalled: every token dropped at once; returns the shop's id (None if unknown)."""
    with transaction() as cur:
        cur.execute(
            """
            UPDATE shops SET status = 'uninstalled', status_detail = 'app uninstalled',
                access_token_enc = NULL, refresh_token_enc = NULL, access_expires_at = NULL,
                refresh_expires_at = NULL, token_version = token_version + 1,
                uninstalled_at = now(), updated_at = now()
            WHERE domain = %s RETURNING id
            """,
            (domain,),
        )
        row = cur.fetchone()
    return int(row["id"]) if row else None


def get_shop(shop_id: int) -> Shop:
    row = single_statement("SELECT * FROM shops WHERE id = %s", (shop_id,))
    if row is None:
        raise LookupError(f"no shop with id {shop_id}")
    return _from_row(row)


def find_shop(domain: str) -> Shop | None:
    with transaction() as cur:
        cur.execute("SELECT * FROM shops WHERE domain = %s", (domain,))
        row = cur.fetchone()
    return _from_row(row) if row else None


def shops_to_refresh(within: timedelta, limit: int = 100) -> list[int]:
    """Expiring-token shops whose refresh token lapses within ``within``: refreshed on a schedule
    so an idle shop never reaches its refresh token's end (APP-AUTH.md §3)."""
    with transaction() as cur:
        cur.execute(
            "SELECT id FROM shops WHERE status = 'active' AND token_kind = 'expiring'"
            " AND refresh_expires_at < now() + %s ORDER BY refresh_expires_at LIMIT %s",
            (within, limit),
        )
        return [row["id"] for row in cur.fetchall()]


def record_scopes(shop_id: int, granted: list[str]) -> tuple[str, ...]:
    """Store the scopes Shopify reports for the token; return the required ones that are missing."""
    missing = _missing(granted)
    with transaction() as cur:
        cur.execute(
            "UPDATE shops SET granted_scopes = %s, missing_scopes = %s, updated_at = now() WHERE id = %s",
            (sorted(granted), missing, shop_id),
        )
    return tuple(missing)


def reencrypt_tokens() -> int:
    """Re-encrypt every stored token under the first of ``TOKEN_ENCRYPTION_KEYS`` (key rotation);
    returns how many shops. Under the rows' locks, so a concurrent refresh is never lost."""
    with transaction() as cur:
        cur.execute("SELECT id, access_token_enc, refresh_token_enc FROM shops FOR UPDATE")
        rows = cur.fetchall()
        for row in rows:
            cur.execute(
                "UPDATE shops SET access_token_enc = %s, refresh_token_enc = %s WHERE id = %s",
                (
                    crypto.reencrypt(row["access_token_enc"]) if row["access_token_enc"] else None,
                    crypto.reencrypt(row["refresh_token_enc"]) if row["refresh_token_enc"] else None,
                    row["id"],
                ),
            )
    return len(rows)
