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

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.session.request(method, self.base_url + path, json=body, timeout=30)
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
    ) -> None:
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
    ) -> None:
        self._call(
            "POST",
            self._shop(domain) + "/throttle",
            {"bucket_size": bucket_size, "restore_rate": restore_rate, "throttle_mode": throttle_mode},
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
