"""What the sync holds about people, and its erasure (Shopify's mandatory compliance webhooks).

Personal data reaches us only inside stored event bodies (the buyer's reason texts and notes, the
exchange note, the tracking of their parcel, and whatever unknown fields a producer added) and in
the call log's details (Shopify's userErrors may echo input). Erasure keeps exactly what the sync
needs to stay correct: the ids, types, times, states and statuses. A redacted body is rebuilt from
an allow-list of fields, so anything else a producer sent goes too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from workers.store.db import transaction

# What a redacted event body keeps: enough to validate, plan and adopt (items by line and count).
_KEPT_TOP = ("id", "type", "occurred_at", "shop")
_KEPT_RETURN = ("id", "order", "origin", "refund_method")
_KEPT_ITEM = ("line_item_id", "quantity", "reason_id")
# Fields of a body that are personal (they go in a data report).
_PERSONAL_RETURN = ("exchange_note", "tracking")
_PERSONAL_ITEM = ("reason", "customer_note")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _redacted(payload: dict[str, Any]) -> dict[str, Any]:
    ret = _dict(payload.get("return"))
    items = ret.get("items")
    items = items if isinstance(items, list) else []
    body = {key: payload[key] for key in _KEPT_TOP if key in payload}
    body["return"] = {key: ret[key] for key in _KEPT_RETURN if key in ret}
    body["return"]["items"] = [
        {key: item[key] for key in _KEPT_ITEM if key in item} for item in items if isinstance(item, dict)
    ]
    return body


def _order_ids(cur: Any, shop_domain: str, shopify_order_ids: Sequence[int] | None) -> list[int]:
    """Our order rows of the shop (all of them, or those of these numeric Shopify order ids)."""
    if shopify_order_ids is None:
        cur.execute(
            "SELECT o.id FROM orders o JOIN shops s ON s.id = o.shop_id WHERE s.domain = %s", (shop_domain,)
        )
    else:
        gids = [f"gid://shopify/Order/{int(number)}" for number in shopify_order_ids]
        cur.execute(
            "SELECT o.id FROM orders o JOIN shops s ON s.id = o.shop_id"
            " WHERE s.domain = %s AND o.order_gid = ANY(%s)",
            (shop_domain, gids),
        )
    return [row["id"] for row in cur.fetchall()]


def redact(shop_domain: str, shopify_order_ids: Sequence[int] | None = None) -> int:
    """Erase the personal data held for these orders of the shop (every order: ``None``, the
    shop/redact case). Returns how many event bodies were redacted."""
    with transaction() as cur:
        orders = _order_ids(cur, shop_domain, shopify_order_ids)
        if not orders:
            return 0
        cur.execute(
            "SELECT id, payload FROM events WHERE order_id = ANY(%s) AND redacted_at IS NULL FOR UPDATE",
            (orders,),
        )
        rows = cur.fetchall()
        for row in rows:
            cur.execute(
                """
                UPDATE events SET payload = %s::jsonb, redacted_at = now(),
                    payload_digest = encode(sha256(convert_to(payload::text, 'UTF8')), 'hex')
                WHERE id = %s
                """,
                (json.dumps(_redacted(row["payload"])), row["id"]),
            )
        cur.execute("UPDATE shopify_calls SET detail = NULL WHERE order_id = ANY(%s)", (orders,))
        if shopify_order_ids is None:
            cur.execute("UPDATE shops SET redacted_at = now() WHERE domain = %s", (shop_domain,))
    return len(rows)


def report(shop_domain: str, shopify_order_ids: Sequence[int]) -> dict[str, Any]:
    """What the sync holds for these orders (customers/data_request): every return and event, with
    the personal fields of each event body as stored."""
    with transaction() as cur:
        orders = _order_ids(cur, shop_domain, shopify_order_ids)
        cur.execute(
            """
            SELECT o.order_gid, o.order_name, r.platform_return_id, r.applied_state, r.sync,
                   e.event_id, e.type, e.occurred_at, e.status, e.payload, e.redacted_at
            FROM events e JOIN returns r ON r.id = e.return_id JOIN orders o ON o.id = e.order_id
            WHERE e.order_id = ANY(%s) ORDER BY o.id, r.id, e.occurred_at, e.id
            """,
            (orders,),
        )
        rows = cur.fetchall()
    held: dict[str, Any] = {}
    for row in rows:
        order = held.setdefault(
            row["order_gid"] or row["order_name"], {"name": row["order_name"], "returns": {}}
        )
        ret = order["returns"].setdefault(
            row["platform_return_id"], {"state": row["applied_state"], "sync": row["sync"], "events": []}
        )
        body = row["payload"].get("return") or {}
        ret["events"].append(
            {
                "id": row["event_id"],
                "type": row["type"],
                "occurred_at": row["occurred_at"].isoformat(),
                "status": row["status"],
                "redacted": row["redacted_at"] is not None,
                "personal": {
                    **{key: body[key] for key in _PERSONAL_RETURN if body.get(key)},
                    "items": [
                        {key: item[key] for key in _PERSONAL_ITEM if item.get(key)}
                        for item in body.get("items") or []
                        if isinstance(item, dict)
                    ],
                },
            }
        )
    return {"shop": shop_domain, "orders_requested": list(shopify_order_ids), "orders": held}


def record_data_request(
    shop_domain: str, request_id: str | None, customer: dict[str, Any], orders: Sequence[int]
) -> int:
    data = report(shop_domain, orders)
    with transaction() as cur:
        cur.execute(
            """
            INSERT INTO data_requests (shop_domain, request_id, customer, orders_requested, report)
            VALUES (%s, %s, %s::jsonb, %s, %s::jsonb) RETURNING id
            """,
            (shop_domain, request_id, json.dumps(customer), list(orders), json.dumps(data)),
        )
        row = cur.fetchone()
    assert row is not None
    return int(row["id"])


def data_requests(limit: int = 100) -> list[dict[str, Any]]:
    with transaction() as cur:
        cur.execute(
            "SELECT id, shop_domain, request_id, customer, orders_requested, report, received_at, sent_at"
            " FROM data_requests ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        return [dict(row) for row in cur.fetchall()]
