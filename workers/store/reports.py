"""Read models for operators (the CLI and the ops page): returns, an order's timeline, shops.

Reads only, each a single statement (no transaction around it); bounded by a limit each. The
error inbox itself is ``workers.store.problems``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.store.db import single_statement, statement


def returns(
    shop: str | None = None,
    sync: str | None = None,
    category: str | None = None,
    search: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    return statement(
        """
            SELECT s.domain AS shop, r.platform_return_id AS return_id, o.id AS order_id,
                   COALESCE(o.order_name, o.order_gid, o.order_ref) AS "order", r.applied_state AS state,
                   r.sync, r.category, r.shopify_status, r.detail, r.updated_at
            FROM returns r JOIN shops s ON s.id = r.shop_id JOIN orders o ON o.id = r.order_id
            WHERE (%(shop)s::text IS NULL OR s.domain = %(shop)s)
              AND (%(sync)s::text IS NULL OR r.sync = %(sync)s)
              AND (%(category)s::text IS NULL OR r.category = %(category)s)
              AND (%(search)s::text IS NULL OR o.order_name = %(search)s OR o.order_gid = %(search)s
                   OR r.platform_return_id = %(search)s)
            ORDER BY r.updated_at DESC, r.id DESC LIMIT %(limit)s
            """,
        {"shop": shop, "sync": sync, "category": category, "search": search, "limit": limit},
    )


@dataclass(frozen=True)
class FoundReturn:
    return_row_id: int
    order_id: int


def find_return(shop: str, return_id: str) -> FoundReturn | None:
    """A platform return's row and its order's row, by shop domain and the platform's id."""
    row = single_statement(
        "SELECT r.id, r.order_id FROM returns r JOIN shops s ON s.id = r.shop_id"
        " WHERE s.domain = %s AND r.platform_return_id = %s",
        (shop, return_id),
    )
    return FoundReturn(int(row["id"]), int(row["order_id"])) if row else None


def order_of(shop: str, return_id: str) -> int | None:
    found = find_return(shop, return_id)
    return found.order_id if found else None


def returns_of(order_id: int) -> list[int]:
    """The return rows of an order row, oldest first."""
    return [
        int(row["id"])
        for row in statement("SELECT id FROM returns WHERE order_id = %s ORDER BY id", (order_id,))
    ]


def lease_of(keys: list[str]) -> dict[str, Any] | None:
    """Who holds a lease on any of these order keys now (``holder``, ``left``), if anyone."""
    return single_statement(
        "SELECT holder, expires_at - now() AS left FROM order_leases"
        " WHERE key = ANY(%s) AND expires_at > now() ORDER BY expires_at DESC LIMIT 1",
        (keys,),
    )


def doorbell_of(order_id: int) -> dict[str, Any]:
    """An order's open events (``open``), those no doorbell was rung for (``unrung``), and when
    one was last rung (``rung_at``)."""
    row = single_statement(
        "SELECT count(*) FILTER (WHERE status IN ('accepted', 'waiting')) AS open,"
        " count(*) FILTER (WHERE status IN ('accepted', 'waiting') AND enqueued_at IS NULL) AS unrung,"
        " max(enqueued_at) AS rung_at FROM events WHERE order_id = %s",
        (order_id,),
    )
    assert row is not None
    return row


def throttled_last_minute(shop_id: int) -> int:
    """THROTTLED answers Shopify gave this shop in the last minute (the call log)."""
    row = single_statement(
        "SELECT count(*) AS n FROM shopify_calls WHERE shop_id = %s AND outcome = 'throttled'"
        " AND at > now() - interval '1 minute'",
        (shop_id,),
    )
    return int(row["n"]) if row else 0


def timeline(order_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    """Every event received, every state change of its returns, every run and every Shopify call
    of the order, in time order: ``{at, kind, return_id, what, detail}``."""
    return statement(
        """
            SELECT * FROM (
                SELECT e.received_at AS at, 'event' AS kind, r.platform_return_id AS return_id,
                       e.type || ' ' || e.event_id || ' (' || e.status || ')' AS what, e.detail
                FROM events e JOIN returns r ON r.id = e.return_id WHERE e.order_id = %(order)s
                UNION ALL
                SELECT c.at, 'state', r.platform_return_id,
                       c.sync || COALESCE(' / ' || c.applied_state, '')
                       || COALESCE(' [' || c.category || ']', ''),
                       c.detail
                FROM return_changes c JOIN returns r ON r.id = c.return_id WHERE r.order_id = %(order)s
                UNION ALL
                SELECT a.started_at, 'run', NULL,
                       COALESCE(a.outcome, 'running') || ' on ' || COALESCE(a.worker, '?'),
                       a.detail
                FROM attempts a WHERE a.order_id = %(order)s
                UNION ALL
                SELECT k.at, 'shopify', r.platform_return_id,
                       k.operation || ' ' || k.outcome || COALESCE(' HTTP ' || k.http_status, '')
                       || COALESCE(' cost ' || k.actual_cost, '') || ' ' || k.duration_ms || 'ms',
                       k.detail
                FROM shopify_calls k LEFT JOIN returns r ON r.id = k.return_id WHERE k.order_id = %(order)s
            ) t ORDER BY at, kind LIMIT %(limit)s
            """,
        {"order": order_id, "limit": limit},
    )


def shops() -> list[dict[str, Any]]:
    """Every shop: its installation, scopes, API version, token kind and expiry, and backlog."""
    return statement(
        """
            SELECT s.domain AS shop, s.status, s.status_detail, s.token_kind, s.access_expires_at,
                   s.token_refreshed_at, s.api_version, s.granted_scopes, s.missing_scopes,
                   count(r.id) FILTER (WHERE r.sync <> 'synced') AS unsynced,
                   count(r.id) FILTER (WHERE r.sync = 'pending') AS pending,
                   count(r.id) FILTER (WHERE r.sync = 'waiting') AS waiting,
                   count(r.id) FILTER (WHERE r.sync = 'failed') AS failed,
                   (SELECT count(*) FROM shopify_calls c WHERE c.shop_id = s.id AND c.outcome = 'throttled'
                     AND c.at > now() - interval '1 minute') AS throttled_last_minute
            FROM shops s LEFT JOIN returns r ON r.shop_id = s.id
            GROUP BY s.id ORDER BY s.domain
            """,
        (),
    )
