"""Shops: the Shopify stores the sync writes to, and what it knows about their installation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from config import get_settings
from workers.store import crypto
from workers.store.db import transaction

REQUIRED_SCOPES = ("read_orders", "write_orders", "read_returns", "write_returns")


@dataclass(frozen=True)
class Shop:
    id: int
    domain: str
    access_token: str
    api_version: str
    api_url: str | None = None
    tag_language: str = "en"
    reason_overrides: dict[str, str] = field(default_factory=dict)
    granted_scopes: tuple[str, ...] | None = None
    missing_scopes: tuple[str, ...] = ()
    waiting_horizon_s: int = 14 * 24 * 3600

    @property
    def graphql_url(self) -> str:
        template = self.api_url or get_settings().shopify_url_template
        return template.format(shop=self.domain, version=self.api_version)

    @property
    def needs_reinstall(self) -> bool:
        return bool(self.missing_scopes)

    def __repr__(self) -> str:  # never print the token
        return f"Shop(id={self.id}, domain={self.domain!r}, api_version={self.api_version!r})"


def _from_row(row: Mapping[str, Any]) -> Shop:
    return Shop(
        id=row["id"],
        domain=row["domain"],
        access_token=crypto.decrypt(row["access_token_enc"]),
        api_version=row["api_version"],
        api_url=row["api_url"],
        tag_language=row["tag_language"],
        reason_overrides=dict(row["reason_overrides"] or {}),
        granted_scopes=tuple(row["granted_scopes"]) if row["granted_scopes"] is not None else None,
        missing_scopes=tuple(row["missing_scopes"] or ()),
        waiting_horizon_s=row["waiting_horizon_s"],
    )


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
    """Create or update a shop. A new token clears the needs-reinstall mark: scopes are re-read."""
    settings = get_settings()
    with transaction() as cur:
        cur.execute(
            """
            INSERT INTO shops (domain, access_token_enc, api_url, api_version, tag_language,
                               reason_overrides, waiting_horizon_s)
            VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s)
            ON CONFLICT (domain) DO UPDATE SET
                access_token_enc = EXCLUDED.access_token_enc, api_url = EXCLUDED.api_url,
                api_version = EXCLUDED.api_version, tag_language = EXCLUDED.tag_language,
                reason_overrides = EXCLUDED.reason_overrides,
                waiting_horizon_s = EXCLUDED.waiting_horizon_s,
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


def get_shop(shop_id: int) -> Shop:
    with transaction() as cur:
        cur.execute("SELECT * FROM shops WHERE id = %s", (shop_id,))
        row = cur.fetchone()
    if row is None:
        raise LookupError(f"no shop with id {shop_id}")
    return _from_row(row)


def find_shop(domain: str) -> Shop | None:
    with transaction() as cur:
        cur.execute("SELECT * FROM shops WHERE domain = %s", (domain,))
        row = cur.fetchone()
    return _from_row(row) if row else None


def record_scopes(shop_id: int, granted: list[str]) -> tuple[str, ...]:
    """Store the scopes Shopify reports for the token; return the required ones that are missing."""
    missing = [scope for scope in REQUIRED_SCOPES if scope not in set(granted)]
    with transaction() as cur:
        cur.execute(
            "UPDATE shops SET granted_scopes = %s, missing_scopes = %s, updated_at = now() WHERE id = %s",
            (sorted(granted), missing, shop_id),
        )
    return tuple(missing)


def reencrypt_tokens() -> int:
    """Re-encrypt every stored token under the first of ``TOKEN_ENCRYPTION_KEYS`` (key rotation);
    returns how many. Row by row under a lock, so a concurrent write is never lost."""
    with transaction() as cur:
        cur.execute("SELECT id, access_token_enc FROM shops FOR UPDATE")
        rows = cur.fetchall()
        for row in rows:
            cur.execute(
                "UPDATE shops SET access_token_enc = %s WHERE id = %s",
                (crypto.reencrypt(row["access_token_enc"]), row["id"]),
            )
    return len(rows)
