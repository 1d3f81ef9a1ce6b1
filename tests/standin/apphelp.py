"""Helpers for the app/OAuth/webhook tests: a tiny webhook receiver of our own, an install that goes
through the real authorize -> callback -> code exchange, and bounded polls (never durations)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import requests

from standin.admin import StandinAdmin
from standin.server import RunningStandin

SCOPES = "read_orders,write_orders,read_returns,write_returns"
REDIRECT = "https://returnsync.example/shopify/callback"


def callback_is_genuine(params: dict[str, str], secret: str) -> bool:
    """APP-AUTH.md §2 step 4, verbatim."""
    msg = "&".join(
        f"{k}={quote(v, safe='')}" for k, v in sorted(params.items()) if k not in ("hmac", "signature")
    )
    digest = hmac.new(secret.encode(), msg.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(params.get("hmac", ""), digest)


def webhook_is_genuine(body: bytes, header: str, secret: str) -> bool:
    digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(header, digest)


def wait_until(check: Callable[[], Any], timeout_s: float = 15.0, interval_s: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy (returned) or the bound passes (fails)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)


def new_domain(prefix: str = "app") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}.myshopify.com"


def new_app(admin: StandinAdmin, **kwargs: Any) -> tuple[str, str]:
    client_id = "app-" + uuid.uuid4().hex[:8]
    secret = "shpss_" + uuid.uuid4().hex
    admin.register_app(client_id, [secret], **kwargs)
    return client_id, secret


def authorize(
    standin: RunningStandin,
    shop: str,
    client_id: str,
    scope: str = SCOPES,
    state: str = "5c3f0a9e7b1d4c62",
    by_host: bool = False,
) -> requests.Response:
    params = {"client_id": client_id, "scope": scope, "redirect_uri": REDIRECT, "state": state}
    if by_host:
        return requests.get(
            f"{standin.url}/admin/oauth/authorize",
            params=params,
            headers={"Host": shop},
            allow_redirects=False,
            timeout=10,
        )
    return requests.get(
        f"{standin.url}/shops/{shop}/admin/oauth/authorize", params=params, allow_redirects=False, timeout=10
    )


def callback_params(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "?")
    return dict(parse_qsl(urlsplit(location).query, keep_blank_values=True))


def token_url(standin: RunningStandin, shop: str) -> str:
    return f"{standin.url}/shops/{shop}/admin/oauth/access_token"


def exchange(
    standin: RunningStandin, shop: str, client_id: str, secret: str, code: str, expiring: Any = "1"
) -> requests.Response:
    body = {"client_id": client_id, "client_secret": secret, "code": code}
    if expiring is not None:
        body["expiring"] = expiring
    return requests.post(token_url(standin, shop), json=body, timeout=10)


def install(
    standin: RunningStandin, shop: str, client_id: str, secret: str, scope: str = SCOPES, expiring: Any = "1"
) -> dict[str, Any]:
    """Authorize, check the callback, exchange the code: the token response."""
    params = callback_params(authorize(standin, shop, client_id, scope))
    assert callback_is_genuine(params, secret)
    response = exchange(standin, shop, client_id, secret, params["code"], expiring)
    assert response.status_code == 200, response.text
    return response.json()


def refresh(standin: RunningStandin, shop: str, client_id: str, secret: str, token: str) -> requests.Response:
    return requests.post(
        token_url(standin, shop),
        json={
            "client_id": client_id,
            "client_secret": secret,
            "grant_type": "refresh_token",
            "refresh_token": token,
        },
        timeout=10,
    )


def gql(
    standin: RunningStandin, shop: str, token: str, query: str, variables: dict[str, Any] | None = None
) -> requests.Response:
    return requests.post(
        standin.graphql_url(shop),
        json={"query": query, "variables": variables or {}},
        headers={"X-Shopify-Access-Token": token},
        timeout=10,
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local HTTP server of the test's own that records every POST and answers `statuses` in
    turn (then 200)."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def by_topic(self, topic: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.headers.get("x-shopify-topic") == topic]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_receiver() -> Receiver:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            receiver = holder["r"]
            with receiver.lock:
                receiver.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    receiver = Receiver(server, thread)
    holder["r"] = receiver
    thread.start()
    return receiver
