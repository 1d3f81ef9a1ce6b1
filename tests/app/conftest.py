"""The Shopify app side, for real: our web app served on a port of its own (the stand-in calls it
back: the OAuth redirect, the webhooks), a stand-in app registered for it, and installs that go
through authorize -> callback -> code exchange."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from config import get_settings
from standin.admin import StandinAdmin
from standin.server import RunningStandin
from tests.apply.conftest import T0, celery_workers  # noqa: F401  (the fixture, for tests here)
from web.app import create_app
from workers.events import load_event
from workers.shopify import api as api_module
from workers.shopify import client as client_module
from workers.store.db import transaction
from workers.store.inbox import record_event
from workers.store.shops import Shop, find_shop


@dataclass
class AppWorld:
    """The app registered on the stand-in, our web app serving it, and shops to install it on."""

    admin: StandinAdmin
    web_url: str
    client_id: str
    secret: str

    def new_shop(
        self, orders: dict[str, dict[int, int]] | None = None, **throttle: Any
    ) -> tuple[str, dict[str, str]]:
        """A shop on the stand-in (no legacy token: only the app reaches it) with fulfilled
        orders; returns its domain and order name -> GID."""
        domain = f"app-{uuid.uuid4().hex[:10]}.myshopify.com"
        self.admin.create_shop(domain, None, **throttle)
        gids = {}
        for name, lines in (orders or {}).items():
            created = self.admin.create_order(
                domain, name, [{"id": li, "quantity": q, "title": f"Item {li}"} for li, q in lines.items()]
            )
            gids[name] = created["id"]
        return domain, gids

    def install(self, domain: str) -> requests.Response:
        """What a merchant's browser does: our install link, Shopify's grant screen (approving at
        once), back to our callback."""
        response = requests.get(f"{self.web_url}/shopify/install", params={"shop": domain}, timeout=30)
        return response

    def shop(self, domain: str) -> Shop:
        found = find_shop(domain)
        assert found is not None
        return found

    def refreshes(self, domain: str) -> list[dict[str, Any]]:
        return [
            r for r in self.admin.token_requests(self.client_id, domain) if r["grant_type"] == "refresh_token"
        ]


_event_ids = iter(range(1, 10**9))


def record(
    domain: str, event_type: str, return_id: str, order_gid: str, items: dict[int, int], **extra: Any
) -> int:
    """An event as ingest stores it; returns its order row id."""
    body: dict[str, Any] = {
        "id": f"evt_app_{next(_event_ids)}_{uuid.uuid4().hex[:6]}",
        "type": f"return.{event_type}",
        "occurred_at": (T0 + timedelta(minutes=extra.pop("minutes", 0))).isoformat(),
        "shop": domain,
        "return": {
            "id": return_id,
            "order": {"id": order_gid},
            "origin": "return_portal",
            "refund_method": "refund",
            "items": [
                {"line_item_id": str(li), "quantity": q, "reason_id": 23, **extra.pop("item", {})}
                for li, q in items.items()
            ],
            **extra,
        },
    }
    result = record_event(load_event(body), body)
    assert result.status == "accepted", result
    assert result.order_id is not None
    return result.order_id


def statuses(domain: str) -> dict[str, str]:
    with transaction() as cur:
        cur.execute(
            "SELECT e.event_id, e.status FROM events e JOIN shops s ON s.id = e.shop_id WHERE s.domain = %s",
            (domain,),
        )
        return {row["event_id"]: row["status"] for row in cur.fetchall()}


@pytest.fixture
def app_world(
    clean_db: str, standin: RunningStandin, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[AppWorld]:
    """Token lifetimes come from the test's ``app_tokens`` marker: ``@pytest.mark.app_tokens(ttl_s=4)``."""
    marker = request.node.get_closest_marker("app_tokens")
    ttl = dict(marker.kwargs) if marker else {}
    admin = StandinAdmin(standin.url)
    admin.set_webhook_delivery(max_attempts=4, backoff_s=0.2, timeout_s=5)
    client_id = f"returnsync-{uuid.uuid4().hex[:8]}"
    secret = f"shpss_{uuid.uuid4().hex}"
    # Our web app on a real port: the stand-in redirects browsers to it and delivers webhooks to it.
    monkeypatch.setenv("SHOPIFY_CLIENT_ID", client_id)
    monkeypatch.setenv("SHOPIFY_CLIENT_SECRETS", secret)
    monkeypatch.setenv("SHOPIFY_ADMIN_URL_TEMPLATE", standin.url + "/shops/{shop}/admin")
    monkeypatch.setenv("SHOPIFY_URL_TEMPLATE", standin.url + "/shops/{shop}/admin/api/{version}/graphql.json")
    # The test server's access log would print callback queries (codes): keep it quiet.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, None, threaded=True)  # type: ignore[arg-type]
    web_url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("APP_URL", web_url)
    get_settings.cache_clear()
    client_module.reset_session()
    api_module.clear_reason_cache()
    server.app = create_app()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    admin.register_app(
        client_id,
        [secret],
        webhooks_uri=f"{web_url}/shopify/webhooks",
        compliance_uri=f"{web_url}/shopify/webhooks",
        token_ttl_s=ttl.get("ttl_s", 3600),
        refresh_token_ttl_s=ttl.get("refresh_ttl_s", 7776000),
    )
    try:
        yield AppWorld(admin, web_url, client_id, secret)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        get_settings.cache_clear()
        client_module.reset_session()
