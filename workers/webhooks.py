"""Shopify's webhooks, once stored (``workers.store.webhooks``): what each topic does.

- ``app/uninstalled``: the shop's tokens are dropped at once and its open events rung, so every
  order finds out (no Shopify call) and waits with *app uninstalled: reinstall at ...*;
- fulfilment topics: the order's waiting returns are due now;
- the compliance topics: ``shop/redact`` and ``customers/redact`` erase what the sync holds about
  people; ``customers/data_request`` records what it holds, for an operator to send on.
"""

from __future__ import annotations

import logging
from typing import Any

from workers.store import outbox, privacy, shops
from workers.store import webhooks as deliveries

log = logging.getLogger(__name__)

FULFILMENT_TOPICS = ("fulfillments/create", "orders/fulfilled", "orders/partially_fulfilled")


def _order_gid(topic: str, payload: dict[str, Any]) -> str | None:
    """The order a fulfilment webhook is about (REST payloads carry numeric ids)."""
    if topic != "fulfillments/create" and isinstance(payload.get("admin_graphql_api_id"), str):
        return str(payload["admin_graphql_api_id"])
    raw = payload.get("order_id") if topic == "fulfillments/create" else payload.get("id")
    numbers = _numbers([raw])
    return f"gid://shopify/Order/{numbers[0]}" if numbers else None


def _numbers(values: Any) -> list[int]:
    return [int(v) for v in values or [] if isinstance(v, int) or str(v).isdigit()]


def handle(topic: str, shop_domain: str, payload: dict[str, Any]) -> tuple[str, str | None]:
    """Carry out one delivery; returns (outcome, detail)."""
    if topic == "app/uninstalled":
        shop_id = shops.mark_uninstalled(shop_domain)
        if shop_id is None:
            return "ignored", "unknown shop"
        return "done", f"{outbox.rearm_shop(shop_id)} open events told"
    if topic in FULFILMENT_TOPICS:
        gid = _order_gid(topic, payload)
        if gid is None:
            return "ignored", "no order id"
        return "done", f"{outbox.wake_order(shop_domain, gid)} waiting events woken"
    if topic == "shop/redact":
        return "done", f"{privacy.redact(shop_domain)} event bodies redacted"
    if topic == "customers/redact":
        orders = _numbers(payload.get("orders_to_redact"))
        return "done", f"{privacy.redact(shop_domain, orders)} event bodies redacted"
    if topic == "customers/data_request":
        request, customer = payload.get("data_request"), payload.get("customer")
        number = privacy.record_data_request(
            shop_domain,
            str(request.get("id")) if isinstance(request, dict) else None,
            customer if isinstance(customer, dict) else {},
            _numbers(payload.get("orders_requested")),
        )
        return "done", f"data request {number} recorded"
    return "ignored", f"topic {topic} not handled"


def process(delivery_id: int) -> str | None:
    """Process a stored delivery once; returns its outcome (None: already processed)."""
    delivery = deliveries.claim(delivery_id)
    if delivery is None:
        return None
    try:
        outcome, detail = handle(delivery.topic, delivery.shop_domain, delivery.payload)
    except Exception as exc:
        log.exception("webhook %s (%s) failed", delivery.webhook_id, delivery.topic)
        deliveries.finish(delivery_id, "failed", type(exc).__name__)
        raise
    deliveries.finish(delivery_id, outcome, detail)
    log.info("webhook %s %s for %s: %s", delivery.topic, outcome, delivery.shop_domain, detail)
    return outcome


def process_pending(older_than_s: float = 30.0) -> int:
    """The beat's catch-up: deliveries a web process stored but did not get to process."""
    done = 0
    for delivery_id in deliveries.pending(older_than_s):
        try:
            if process(delivery_id) is not None:
                done += 1
        except Exception:
            continue  # logged; it stays failed for an operator (its row says so)
    return done
