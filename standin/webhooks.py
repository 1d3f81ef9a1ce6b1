"""Webhooks: per-shop subscriptions of apps, signed deliveries from background threads, a log.

A delivery is one event sent to one address. It is POSTed with a JSON body and Shopify's headers
(X-Shopify-Topic, -Hmac-Sha256, -Shop-Domain, -API-Version, -Webhook-Id, -Event-Id,
-Triggered-At), with a 1 s connect and 5 s read timeout, redirects not followed; anything but a
2xx is a failure and is retried after `backoff_s`, doubling, up to `max_attempts` attempts in all.
A retry resends the original body with the same X-Shopify-Webhook-Id, X-Shopify-Event-Id and
X-Shopify-Triggered-At (chosen: the webhook id names the delivery, not the attempt); the HMAC is
computed with the app's current secret at each attempt. Every attempt is logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from standin.apps import App
    from standin.state import Fulfillment, Order, Shop

DELIVERY_LOG_LIMIT = 20_000

# Topic enum (GraphQL) <-> topic name (headers, toml). Only the ones the stand-in emits, plus the
# compliance topics; any other enum value can be subscribed to and is shown as lower/slash form.
TOPIC_NAMES: dict[str, str] = {
    "APP_UNINSTALLED": "app/uninstalled",
    "FULFILLMENTS_CREATE": "fulfillments/create",
    "ORDERS_FULFILLED": "orders/fulfilled",
    "ORDERS_PARTIALLY_FULFILLED": "orders/partially_fulfilled",
    "CUSTOMERS_DATA_REQUEST": "customers/data_request",
    "CUSTOMERS_REDACT": "customers/redact",
    "SHOP_REDACT": "shop/redact",
}
TOPIC_ENUMS = {name: enum for enum, name in TOPIC_NAMES.items()}
COMPLIANCE_TOPICS = ("customers/data_request", "customers/redact", "shop/redact")


def topic_name(enum: str) -> str:
    if enum in TOPIC_NAMES:
        return TOPIC_NAMES[enum]
    head, _, tail = enum.lower().partition("_")
    return f"{head}/{tail}" if tail else head


def topic_enum(value: str) -> str:
    """Accept `orders/fulfilled`, `orders_fulfilled` or `ORDERS_FULFILLED`."""
    if value in TOPIC_ENUMS:
        return TOPIC_ENUMS[value]
    return value.replace("/", "_").upper()


def sign(body: bytes, secret: str) -> str:
    """X-Shopify-Hmac-Sha256: base64 HMAC-SHA256 of the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _triggered_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Subscription:
    num: int
    client_id: str
    shop: str
    topic: str  # enum, e.g. FULFILLMENTS_CREATE
    uri: str
    format: str
    api_version: str
    name: str | None = None
    filter: str | None = None
    include_fields: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))

    @property
    def id(self) -> str:
        return f"gid://shopify/WebhookSubscription/{self.num}"

    def graphql(self) -> dict[str, Any]:
        return {
            "__typename": "WebhookSubscription",
            "id": self.id,
            "legacyResourceId": str(self.num),
            "topic": self.topic,
            "uri": self.uri,
            "callbackUrl": self.uri,
            "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": self.uri},
            "format": self.format,
            "apiVersion": {"handle": self.api_version, "displayName": self.api_version, "supported": True},
            "createdAt": self.created_at,
            "updatedAt": self.created_at,
            "includeFields": list(self.include_fields),
            "metafieldNamespaces": [],
            "metafields": [],
            "filter": self.filter,
            "name": self.name,
        }

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client_id": self.client_id,
            "shop": self.shop,
            "topic": topic_name(self.topic),
            "uri": self.uri,
            "format": self.format,
            "api_version": self.api_version,
        }


class Webhooks:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.subscriptions: dict[int, Subscription] = {}
        self.deliveries: deque[dict[str, Any]] = deque(maxlen=DELIVERY_LOG_LIMIT)
        self.max_attempts = 4
        self.backoff_s = 0.2
        self.connect_timeout_s = 1.0
        self.read_timeout_s = 5.0
        self._next = 1

    def reset(self) -> None:
        with self.lock:
            self.subscriptions.clear()
            self.deliveries.clear()

    def configure(self, spec: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if spec.get("max_attempts") is not None:
                self.max_attempts = max(1, int(spec["max_attempts"]))
            if spec.get("backoff_s") is not None:
                self.backoff_s = max(0.0, float(spec["backoff_s"]))
            if spec.get("timeout_s") is not None:
                self.read_timeout_s = max(0.1, float(spec["timeout_s"]))
            return {
                "max_attempts": self.max_attempts,
                "backoff_s": self.backoff_s,
                "timeout_s": self.read_timeout_s,
            }

    # --- subscriptions ---------------------------------------------------------------------------

    def subscribe(
        self, client_id: str, shop: str, topic: str, uri: str, fmt: str, api_version: str, **extra: Any
    ) -> Subscription:
        with self.lock:
            sub = Subscription(self._next, client_id, shop, topic, uri, fmt, api_version, **extra)
            self._next += 1
            self.subscriptions[sub.num] = sub
            return sub

    def find(self, client_id: str | None, shop: str | None, topic: str | None = None) -> list[Subscription]:
        with self.lock:
            return [
                s
                for s in self.subscriptions.values()
                if (client_id is None or s.client_id == client_id)
                and (shop is None or s.shop == shop)
                and (topic is None or s.topic == topic)
            ]

    def get(self, gid: str) -> Subscription | None:
        num = gid.rsplit("/", 1)[-1]
        return self.subscriptions.get(int(num)) if num.isdigit() else None

    def delete(self, sub: Subscription) -> None:
        with self.lock:
            self.subscriptions.pop(sub.num, None)

    def delete_for(self, client_id: str, shop: str) -> int:
        with self.lock:
            gone = [n for n, s in self.subscriptions.items() if s.client_id == client_id and s.shop == shop]
            for num in gone:
                del self.subscriptions[num]
            return len(gone)

    # --- deliveries ------------------------------------------------------------------------------

    def emit(self, apps: dict[str, App], shop: Shop, topic: str, payload: dict[str, Any]) -> str | None:
        """Send an event to every subscription of the shop for `topic` (enum), one delivery per
        app and address, all with the same event id (returned; None when nobody subscribed)."""
        targets: dict[tuple[str, str], str] = {}
        for sub in self.find(None, shop.domain, topic):
            targets.setdefault((sub.client_id, sub.uri), sub.api_version)
        if not targets:
            return None
        event_id = str(uuid.uuid4())
        for (client_id, uri), api_version in targets.items():
            app = apps.get(client_id)
            if app is not None:
                self.deliver(app, shop.domain, topic, uri, payload, event_id, api_version)
        return event_id

    def deliver(
        self,
        app: App,
        shop: str,
        topic: str,
        uri: str,
        payload: dict[str, Any],
        event_id: str | None = None,
        api_version: str | None = None,
    ) -> dict[str, str]:
        """Start one delivery in a background thread; returns its ids."""
        job = {
            "app": app,
            "shop": shop,
            "topic": topic_name(topic),
            "uri": uri,
            "body": json.dumps(payload, separators=(",", ":")).encode(),
            "event_id": event_id or str(uuid.uuid4()),
            "webhook_id": str(uuid.uuid4()),
            "triggered_at": _triggered_at(),
            "api_version": api_version or app.api_version,
        }
        threading.Thread(target=self._run, args=(job,), name="standin-webhook", daemon=True).start()
        return {"event_id": job["event_id"], "webhook_id": job["webhook_id"]}

    def _run(self, job: dict[str, Any]) -> None:
        app: App = job["app"]
        with requests.Session() as session:
            for attempt in range(1, self.max_attempts + 1):
                headers = {
                    "Content-Type": "application/json",
                    "X-Shopify-Topic": job["topic"],
                    "X-Shopify-Hmac-Sha256": sign(job["body"], app.secret),
                    "X-Shopify-Shop-Domain": job["shop"],
                    "X-Shopify-API-Version": job["api_version"],
                    "X-Shopify-Webhook-Id": job["webhook_id"],
                    "X-Shopify-Event-Id": job["event_id"],
                    "X-Shopify-Triggered-At": job["triggered_at"],
                }
                status: int | None = None
                error: str | None = None
                try:
                    response = session.post(
                        job["uri"],
                        data=job["body"],
                        headers=headers,
                        timeout=(self.connect_timeout_s, self.read_timeout_s),
                        allow_redirects=False,
                    )
                    status = response.status_code
                except requests.RequestException as exc:
                    error = type(exc).__name__
                ok = status is not None and 200 <= status < 300
                entry = {
                    "topic": job["topic"],
                    "shop": job["shop"],
                    "client_id": app.client_id,
                    "uri": job["uri"],
                    "event_id": job["event_id"],
                    "webhook_id": job["webhook_id"],
                    "status": status,
                    "attempt": attempt,
                    "ok": ok,
                    "error": error,
                    "at": time.time(),
                }
                with self.lock:
                    self.deliveries.append(entry)
                if ok:
                    return
                if attempt < self.max_attempts:
                    time.sleep(self.backoff_s * 2 ** (attempt - 1))

    def delivery_log(self, shop: str | None = None, topic: str | None = None) -> list[dict[str, Any]]:
        name = topic_name(topic_enum(topic)) if topic else None
        with self.lock:
            return [
                dict(d)
                for d in self.deliveries
                if (shop is None or d["shop"] == shop) and (name is None or d["topic"] == name)
            ]


# --- Payloads (REST-style JSON, as Shopify's webhooks carry) ------------------------------------


def shop_payload(shop: Shop) -> dict[str, Any]:
    return {
        "id": shop.num,
        "name": shop.name,
        "email": shop.email,
        "domain": shop.domain,
        "myshopify_domain": shop.domain,
    }


def fulfillment_payload(ful: Fulfillment) -> dict[str, Any]:
    order = ful.order
    return {
        "id": ful.num,
        "order_id": order.num,
        "admin_graphql_api_id": ful.id,
        "name": f"{order.name}.{order.fulfillments.index(ful) + 1}",
        "status": "success",
        "created_at": ful.created_at,
        "updated_at": ful.created_at,
        "service": "manual",
        "tracking_company": None,
        "tracking_number": None,
        "tracking_numbers": [],
        "tracking_url": None,
        "tracking_urls": [],
        "line_items": [
            {
                "id": fli.line_item.num,
                "admin_graphql_api_id": fli.line_item.id,
                "title": fli.line_item.title,
                "quantity": fli.quantity,
                "sku": fli.line_item.sku,
            }
            for fli in ful.line_items
        ],
    }


def order_payload(order: Order) -> dict[str, Any]:
    status = order.display_fulfillment_status()
    return {
        "id": order.num,
        "admin_graphql_api_id": order.id,
        "name": order.name,
        "email": order.email,
        "note": order.note,
        "tags": ", ".join(order.tags),
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "fulfillment_status": {"FULFILLED": "fulfilled", "PARTIALLY_FULFILLED": "partial"}.get(status),
        "line_items": [
            {
                "id": li.num,
                "admin_graphql_api_id": li.id,
                "title": li.title,
                "quantity": li.quantity,
                "fulfillable_quantity": li.quantity - order.fulfilled_quantity(li),
            }
            for li in order.line_items
        ],
        "fulfillments": [fulfillment_payload(f) for f in order.fulfillments],
    }


def compliance_payload(shop: Shop, topic: str, body: dict[str, Any], next_id: Any) -> dict[str, Any]:
    """APP-AUTH.md §6 shapes. `body`: optional `customer` {id?, email?, phone?} and `orders` (ids
    or gids); a missing customer id is generated."""
    payload: dict[str, Any] = {"shop_id": shop.num, "shop_domain": shop.domain}
    if topic == "shop/redact":
        return payload
    spec = body.get("customer") or {}
    customer = {
        "id": _number(spec.get("id")) or next_id(),
        "email": spec.get("email"),
        "phone": spec.get("phone"),
    }
    orders = [n for n in (_number(o) for o in body.get("orders") or []) if n is not None]
    if topic == "customers/data_request":
        payload["orders_requested"] = orders
        payload["customer"] = customer
        payload["data_request"] = {"id": _number((body.get("data_request") or {}).get("id")) or next_id()}
    else:
        payload["customer"] = customer
        payload["orders_to_redact"] = orders
    return payload


def _number(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    text = str(value).rsplit("/", 1)[-1]
    return int(text) if text.isdigit() else None
