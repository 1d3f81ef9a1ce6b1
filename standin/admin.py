"""A small client for the stand-in's /_standin admin HTTP API (see README.md)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

DEFAULT_SCOPES = ["read_orders", "write_orders", "read_returns", "write_returns"]


class StandinAdmin:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        response = self.session.request(method, self.base_url + path, json=body, params=query, timeout=30)
        if response.status_code >= 400:
            raise RuntimeError(f"stand-in admin {method} {path}: {response.status_code} {response.text}")
        return response.json()

    def _shop(self, domain: str) -> str:
        return "/_standin/shops/" + quote(domain, safe="")

    def reset(self) -> None:
        self._call("POST", "/_standin/reset")

    def create_shop(
        self,
        domain: str,
        token: str,
        scopes: list[str] | None = None,
        bucket_size: int = 2000,
        restore_rate: int = 100,
        throttle_mode: str = "graphql",
        max_query_cost: int = 1000,
        cost_model: str = "standin",
        own_store_apps: list[str] | None = None,
    ) -> None:
        """A shop with a legacy token (`token` may be None: a shop reached only through apps)."""
        self._call(
            "POST",
            "/_standin/shops",
            {
                "domain": domain,
                "token": token,
                "scopes": DEFAULT_SCOPES if scopes is None else scopes,
                "bucket_size": bucket_size,
                "restore_rate": restore_rate,
                "throttle_mode": throttle_mode,
                "max_query_cost": max_query_cost,
                "cost_model": cost_model,
                "own_store_apps": own_store_apps,
            },
        )

    def set_scopes(self, domain: str, token: str, scopes: list[str]) -> None:
        self._call("POST", self._shop(domain) + "/scopes", {"token": token, "scopes": scopes})

    def set_throttle(
        self,
        domain: str,
        bucket_size: int | None = None,
        restore_rate: int | None = None,
        throttle_mode: str | None = None,
        max_query_cost: int | None = None,
        cost_model: str | None = None,
    ) -> None:
        self._call(
            "POST",
            self._shop(domain) + "/throttle",
            {
                "bucket_size": bucket_size,
                "restore_rate": restore_rate,
                "throttle_mode": throttle_mode,
                "max_query_cost": max_query_cost,
                "cost_model": cost_model,
            },
        )

    def create_order(
        self,
        domain: str,
        name: str,
        line_items: list[dict[str, Any]],
        order_id: int | None = None,
        fulfilled: bool = True,
        tags: list[str] | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        return self._call(
            "POST",
            self._shop(domain) + "/orders",
            {
                "name": name,
                "line_items": line_items,
                "order_id": order_id,
                "fulfilled": fulfilled,
                "tags": tags,
                "note": note,
            },
        )

    def fulfill(
        self, domain: str, order_gid: str, line_items: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        order = quote(str(order_gid).rsplit("/", 1)[-1], safe="")
        return self._call(
            "POST", f"{self._shop(domain)}/orders/{order}/fulfillments", {"line_items": line_items}
        )

    def set_faults(
        self,
        domain: str,
        latency_ms: float = 0,
        jitter_ms: float = 0,
        error_rate: float = 0,
        hang_rate: float = 0,
        lost_response_rate: float = 0,
        seed: int | None = None,
    ) -> None:
        self._call(
            "POST",
            self._shop(domain) + "/faults",
            {
                "latency_ms": latency_ms,
                "jitter_ms": jitter_ms,
                "error_rate": error_rate,
                "hang_rate": hang_rate,
                "lost_response_rate": lost_response_rate,
                "seed": seed,
            },
        )

    def state(self, domain: str) -> dict[str, Any]:
        return self._call("GET", self._shop(domain) + "/state")

    def calls(self, domain: str) -> list[dict[str, Any]]:
        return self._call("GET", self._shop(domain) + "/calls")["calls"]

    def load_seed(self, seed: dict[str, Any]) -> None:
        self._call("POST", "/_standin/seed", seed)

    # --- apps, OAuth and webhooks ----------------------------------------------------------------

    def register_app(
        self,
        client_id: str,
        client_secrets: list[str],
        token_ttl_s: float = 3600,
        refresh_token_ttl_s: float = 7776000,
        client_credentials_ttl_s: float = 86399,
        webhooks_uri: str | None = None,
        compliance_uri: str | None = None,
        scopes: list[str] | None = None,
        redirect_urls: list[str] | None = None,
        api_version: str | None = None,
    ) -> dict[str, Any]:
        """Register (or re-register, e.g. to rotate secrets) a Dev-Dashboard-style app."""
        return self._call(
            "POST",
            "/_standin/apps",
            {
                "client_id": client_id,
                "client_secrets": client_secrets,
                "token_ttl_s": token_ttl_s,
                "refresh_token_ttl_s": refresh_token_ttl_s,
                "client_credentials_ttl_s": client_credentials_ttl_s,
                "webhooks_uri": webhooks_uri,
                "compliance_uri": compliance_uri,
                "scopes": scopes,
                "redirect_urls": redirect_urls,
                "api_version": api_version,
            },
        )

    def apps(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_standin/apps")["apps"]

    def _app(self, client_id: str) -> str:
        return "/_standin/apps/" + quote(client_id, safe="")

    def set_grant_limit(self, domain: str, scopes: list[str] | None) -> None:
        """Installs on this shop grant only these of the requested scopes (None: no limit)."""
        self._call("POST", self._shop(domain) + "/grant_limit", {"scopes": scopes})

    def set_own_store_apps(self, domain: str, client_ids: list[str]) -> None:
        """Apps of the store's own organization: allowed the client credentials grant."""
        self._call("POST", self._shop(domain) + "/own_store_apps", {"apps": client_ids})

    def set_token_faults(
        self, client_id: str, lost_response_next: int = 0, error_next: int = 0, error_status: int = 503
    ) -> None:
        self._call(
            "POST",
            self._app(client_id) + "/token_faults",
            {
                "lost_response_next": lost_response_next,
                "error_next": error_next,
                "error_status": error_status,
            },
        )

    def token_requests(self, client_id: str, shop: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", self._app(client_id) + "/token_requests", params={"shop": shop})[
            "token_requests"
        ]

    def uninstall(self, domain: str, client_id: str) -> dict[str, Any]:
        return self._call("POST", f"{self._shop(domain)}/apps/{quote(client_id, safe='')}/uninstall", {})

    def compliance(
        self,
        domain: str,
        client_id: str,
        topic: str,
        customer: dict[str, Any] | None = None,
        orders: list[Any] | None = None,
    ) -> dict[str, Any]:
        """Deliver customers/data_request, customers/redact or shop/redact to the app."""
        body: dict[str, Any] = {}
        if customer is not None:
            body["customer"] = customer
        if orders is not None:
            body["orders"] = orders
        return self._call(
            "POST", f"{self._shop(domain)}/apps/{quote(client_id, safe='')}/compliance/{topic}", body
        )

    def webhook_deliveries(self, shop: str | None = None, topic: str | None = None) -> list[dict[str, Any]]:
        return self._call("GET", "/_standin/webhooks/deliveries", params={"shop": shop, "topic": topic})[
            "deliveries"
        ]

    def webhook_subscriptions(
        self, shop: str | None = None, client_id: str | None = None, topic: str | None = None
    ) -> list[dict[str, Any]]:
        return self._call(
            "GET",
            "/_standin/webhooks/subscriptions",
            params={"shop": shop, "client_id": client_id, "topic": topic},
        )["subscriptions"]

    def set_webhook_delivery(
        self, max_attempts: int | None = None, backoff_s: float | None = None, timeout_s: float | None = None
    ) -> dict[str, Any]:
        return self._call(
            "POST",
            "/_standin/webhooks/config",
            {"max_attempts": max_attempts, "backoff_s": backoff_s, "timeout_s": timeout_s},
        )
