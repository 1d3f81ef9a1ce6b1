"""HTTP transport: Admin GraphQL endpoints, the /_standin admin API, and fault delivery.

`http.server.ThreadingHTTPServer` with HTTP/1.1 keep-alive: a thread per connection, no
framework overhead (werkzeug's dev server is several times slower). Hung requests sleep in their
own thread, so they never block others.
"""

from __future__ import annotations

import html
import json
import re
import select
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from standin import gateway
from standin.faults import HANG_LIMIT_S
from standin.state import Shop, Store, shop_view
from standin.throttle import COST_MODELS
from standin.webhooks import (
    COMPLIANCE_TOPICS,
    compliance_payload,
    fulfillment_payload,
    order_payload,
    shop_payload,
    topic_enum,
    topic_name,
)

GRAPHQL_HOST_PATH = re.compile(r"^/admin/api/(?P<version>[\w-]+)/graphql\.json$")
GRAPHQL_SHOP_PATH = re.compile(r"^/shops/(?P<shop>[^/]+)/admin/api/(?P<version>[\w-]+)/graphql\.json$")
OAUTH_HOST_PATH = re.compile(r"^/admin/oauth/(?P<endpoint>authorize|access_token)$")
OAUTH_SHOP_PATH = re.compile(r"^/shops/(?P<shop>[^/]+)/admin/oauth/(?P<endpoint>authorize|access_token)$")
SHOP_ADMIN_PATH = re.compile(r"^/_standin/shops/(?P<shop>[^/]+)(?P<rest>/.*)?$")
APP_ADMIN_PATH = re.compile(r"^/_standin/apps/(?P<app>[^/]+)(?P<rest>/.*)?$")
SHOP_APP_PATH = re.compile(r"^/apps/(?P<app>[^/]+)/(?P<action>uninstall|compliance/(?P<topic>.+))$")


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def load_seed(store: Store, seed: dict[str, Any]) -> None:
    """Seed format (also --seed-file): {"apps": [{"client_id", "client_secrets", ...}],
    "shops": [{"domain", "token"?, "scopes"?, "bucket_size"?, "restore_rate"?, "throttle_mode"?,
    "max_query_cost"?, "cost_model"?, "own_store_apps"?, "orders": [{"name", "id"?, "line_items",
    "fulfilled"?, "tags"?, "note"?}]}]}."""
    for app in seed.get("apps", []):
        store.apps.register(app)
    for spec in seed.get("shops", []):
        shop = _create_shop(store, spec)
        if spec.get("own_store_apps"):
            store.apps.set_own_store_apps(shop.domain, list(spec["own_store_apps"]))
        for order in spec.get("orders", []):
            store.create_order(
                shop,
                order["name"],
                order.get("line_items", []),
                order_id=_num(order.get("id") or order.get("order_id")),
                fulfilled=order.get("fulfilled", True),
                tags=order.get("tags"),
                note=order.get("note"),
                email=order.get("email"),
            )


def _create_shop(store: Store, spec: dict[str, Any]) -> Shop:
    return store.create_shop(
        spec["domain"],
        spec.get("token"),
        spec.get("scopes"),
        int(spec.get("bucket_size", 2000)),
        int(spec.get("restore_rate", 100)),
        spec.get("throttle_mode", "graphql"),
        max_query_cost=int(spec.get("max_query_cost", 1000)),
        cost_model=spec.get("cost_model", "standin"),
        shop_id=_num(spec.get("shop_id")),
        name=spec.get("name"),
        email=spec.get("email"),
    )


def _num(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value).rsplit("/", 1)[-1]
    return int(text) if text.isdigit() else None


def admin_dispatch(
    store: Store, method: str, path: str, body: dict[str, Any], query: dict[str, str] | None = None
) -> Any:
    """The /_standin admin API (documented in README.md). Returns a JSON-able result."""
    query = query or {}
    if path == "/_standin/health":
        return {"ok": True}
    if path == "/_standin/reset" and method == "POST":
        store.reset()
        return {"ok": True}
    if path == "/_standin/seed" and method == "POST":
        load_seed(store, body)
        return {"ok": True}
    if path == "/_standin/shops" and method == "POST":
        shop = _create_shop(store, body)
        if body.get("own_store_apps"):
            store.apps.set_own_store_apps(shop.domain, list(body["own_store_apps"]))
        return {"ok": True, "id": shop.num}
    if path == "/_standin/shops" and method == "GET":
        return {"shops": sorted(store.shops)}
    if path.startswith("/_standin/apps") or path.startswith("/_standin/webhooks"):
        return _app_admin(store, method, path, body, query)
    m = SHOP_ADMIN_PATH.match(path)
    if not m:
        raise AdminError(404, f"no admin route {method} {path}")
    shop = store.shop(unquote(m["shop"]))
    if shop is None:
        raise AdminError(404, f"unknown shop {m['shop']}")
    rest = m["rest"] or ""
    if rest == "/state" and method == "GET":
        return dict(shop_view(shop), apps=store.apps.installation_view(shop.domain))
    if rest == "/calls" and method == "GET":
        return {"calls": list(shop.calls)}
    if rest == "/scopes" and method == "POST":
        with shop.lock:
            shop.tokens[body["token"]] = list(body.get("scopes") or [])
        return {"ok": True}
    if rest == "/throttle" and method == "POST":
        if body.get("cost_model") is not None and body["cost_model"] not in COST_MODELS:
            raise AdminError(400, f"cost_model must be one of {', '.join(COST_MODELS)}")
        shop.bucket.configure(body.get("bucket_size"), body.get("restore_rate"))
        if body.get("max_query_cost") is not None:
            shop.max_query_cost = int(body["max_query_cost"])
        if body.get("cost_model") is not None:
            shop.cost_model = body["cost_model"]
        if body.get("throttle_mode"):
            if body["throttle_mode"] not in ("graphql", "http429"):
                raise AdminError(400, "throttle_mode must be 'graphql' or 'http429'")
            shop.throttle_mode = body["throttle_mode"]
        return {"ok": True}
    if rest == "/faults" and method == "POST":
        shop.faults.configure(
            **{
                k: body[k]
                for k in ("latency_ms", "jitter_ms", "error_rate", "hang_rate", "lost_response_rate", "seed")
                if k in body
            }
        )
        return {"ok": True}
    if rest == "/orders" and method == "POST":
        order = store.create_order(
            shop,
            body["name"],
            body.get("line_items", []),
            order_id=_num(body.get("order_id")),
            fulfilled=body.get("fulfilled", True),
            tags=body.get("tags"),
            note=body.get("note"),
            email=body.get("email"),
        )
        return {
            "id": order.id,
            "name": order.name,
            "line_items": [li.id for li in order.line_items],
            "fulfillments": [f.id for f in order.fulfillments],
        }
    fm = re.match(r"^/orders/(?P<order>[^/]+)/fulfillments$", rest)
    if fm and method == "POST":
        order = shop.orders.get(_num(unquote(fm["order"])) or -1)
        if order is None:
            raise AdminError(404, f"unknown order {fm['order']}")
        ful = store.fulfill(
            shop, order, body.get("line_items"), fulfillment_id=_num(body.get("fulfillment_id"))
        )
        with shop.lock:
            fulfilled = order.display_fulfillment_status() == "FULFILLED"
            payloads = {
                "FULFILLMENTS_CREATE": fulfillment_payload(ful),
                "ORDERS_FULFILLED" if fulfilled else "ORDERS_PARTIALLY_FULFILLED": order_payload(order),
            }
        events = {
            topic_name(topic): store.webhooks.emit(store.apps.apps, shop, topic, payload)
            for topic, payload in payloads.items()
        }
        return {
            "id": ful.id,
            "line_items": [
                {"id": x.id, "line_item_id": x.line_item.id, "quantity": x.quantity} for x in ful.line_items
            ],
            "webhook_events": events,
        }
    if rest == "/grant_limit" and method == "POST":
        store.apps.set_grant_limit(shop.domain, body.get("scopes"))
        return {"ok": True}
    if rest == "/own_store_apps" and method == "POST":
        store.apps.set_own_store_apps(shop.domain, list(body.get("apps") or []))
        return {"ok": True}
    am = SHOP_APP_PATH.match(rest)
    if am and method == "POST":
        app = store.apps.app(unquote(am["app"]))
        if app is None:
            raise AdminError(404, f"unknown app {am['app']}")
        if am["action"] == "uninstall":
            return _uninstall(store, shop, app.client_id)
        return _compliance(store, shop, app.client_id, unquote(am["topic"]), body)
    raise AdminError(404, f"no admin route {method} {path}")


def _app_admin(store: Store, method: str, path: str, body: dict[str, Any], query: dict[str, str]) -> Any:
    apps, webhooks = store.apps, store.webhooks
    if path == "/_standin/apps" and method == "POST":
        return apps.register(body).view()
    if path == "/_standin/apps" and method == "GET":
        return {"apps": [a.view() for a in apps.apps.values()]}
    if path == "/_standin/webhooks/deliveries" and method == "GET":
        return {"deliveries": webhooks.delivery_log(query.get("shop"), query.get("topic"))}
    if path == "/_standin/webhooks/subscriptions" and method == "GET":
        topic = topic_enum(query["topic"]) if query.get("topic") else None
        subs = webhooks.find(query.get("client_id"), query.get("shop"), topic)
        return {"subscriptions": [s.view() for s in sorted(subs, key=lambda s: s.num)]}
    if path == "/_standin/webhooks/config" and method == "POST":
        return webhooks.configure(body)
    m = APP_ADMIN_PATH.match(path)
    app = apps.app(unquote(m["app"])) if m else None
    if m is None or app is None:
        raise AdminError(404, f"no admin route {method} {path}" if m is None else f"unknown app {m['app']}")
    rest = m["rest"] or ""
    if rest == "" and method == "GET":
        return app.view()
    if rest == "/token_faults" and method == "POST":
        faults = apps.set_faults(app.client_id, body)
        return {
            "lost_response_next": faults.lost_response_next,
            "error_next": faults.error_next,
            "error_status": faults.error_status,
        }
    if rest == "/token_requests" and method == "GET":
        with apps.lock:
            entries = [dict(e) for e in app.token_requests]
        if query.get("shop"):
            entries = [e for e in entries if e["shop"] == query["shop"]]
        return {"token_requests": entries}
    raise AdminError(404, f"no admin route {method} {path}")


def _uninstall(store: Store, shop: Shop, client_id: str) -> dict[str, Any]:
    """Revoke every token of the app on the shop at once, drop its per-shop subscriptions, then
    tell the app: app/uninstalled to its app-specific address (webhooks_uri, as shopify.app.toml)
    and to any per-shop APP_UNINSTALLED subscription it had."""
    app = store.apps.apps[client_id]
    targets = {app.webhooks_uri: app.api_version} if app.webhooks_uri else {}
    for sub in store.webhooks.find(client_id, shop.domain, "APP_UNINSTALLED"):
        targets.setdefault(sub.uri, sub.api_version)
    result: dict[str, Any] = dict(store.apps.uninstall(client_id, shop.domain))
    result["deleted_subscriptions"] = store.webhooks.delete_for(client_id, shop.domain)
    event_id = str(uuid.uuid4())
    payload = shop_payload(shop)
    result["deliveries"] = [
        store.webhooks.deliver(app, shop.domain, "APP_UNINSTALLED", uri, payload, event_id, version)
        for uri, version in targets.items()
    ]
    result["event_id"] = event_id
    return result


def _compliance(store: Store, shop: Shop, client_id: str, topic: str, body: dict[str, Any]) -> dict[str, Any]:
    app = store.apps.apps[client_id]
    name = topic_name(topic_enum(topic))
    if name not in COMPLIANCE_TOPICS:
        raise AdminError(400, f"compliance topic must be one of {', '.join(COMPLIANCE_TOPICS)}")
    if not app.compliance_uri:
        raise AdminError(400, f"app {client_id} has no compliance_uri")
    payload = compliance_payload(shop, name, body, store.next_id)
    ids = store.webhooks.deliver(app, shop.domain, topic_enum(name), app.compliance_uri, payload)
    return dict(ids, payload=payload)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sync and the benchmark reuse connections
    server: StandinHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the call log is the record; stderr lines per request would only slow us down

    def setup(self) -> None:
        super().setup()
        # Small JSON answers: send them now rather than wait for the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        # Headers and body in one write: two small segments per answer would cost a
        # Nagle/delayed-ACK round (~40 ms) on keep-alive connections.
        self._headers_buffer.append(b"\r\n" + body)
        self.flush_headers()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        raw = self._read_body()
        url = urlsplit(self.path)
        path = url.path
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        store = self.server.store
        if path.startswith("/_standin"):
            try:
                body = json.loads(raw) if raw else {}
                result = admin_dispatch(store, method, path, body, query)
                self._send(200, json.dumps(result).encode())
            except AdminError as error:
                self._send(error.status, json.dumps({"error": str(error)}).encode())
            except (KeyError, ValueError, TypeError) as error:
                self._send(400, json.dumps({"error": f"{type(error).__name__}: {error}"}).encode())
            return
        om = OAUTH_SHOP_PATH.match(path) or OAUTH_HOST_PATH.match(path)
        if om:
            shop_domain = unquote(om["shop"]) if "shop" in om.groupdict() else self._host()
            if om["endpoint"] == "authorize":
                self._authorize(shop_domain, query)
            elif method != "POST":
                self._send(405, b'{"errors":"Method Not Allowed"}')
            else:
                self._access_token(shop_domain, raw, query)
            return
        m = GRAPHQL_SHOP_PATH.match(path)
        if m:
            domain, version = unquote(m["shop"]), m["version"]
        else:
            m = GRAPHQL_HOST_PATH.match(path)
            if not m:
                self._send(404, b'{"errors":"Not Found"}')
                return
            domain, version = self._host(), m["version"]
        if method != "POST":
            self._send(405, b'{"errors":"Method Not Allowed"}')
            return
        token = self.headers.get("X-Shopify-Access-Token")
        shop, grant, denial = gateway.authenticate(store, domain, token)
        if denial is not None or shop is None or grant is None:
            assert denial is not None
            self._send(denial.status, denial.encoded(), denial.headers)
            return
        response = gateway.handle_graphql(store, shop, grant, version, raw)
        if response.fault.hang:
            self._hang()
            return
        if response.fault.lose_response:
            # Applied but never answered: drop the connection, as a proxy timeout would.
            self.close_connection = True
            self._abort()
            return
        self._send(response.status, response.encoded(), response.headers)

    def _host(self) -> str:
        return (self.headers.get("Host") or "").split(":")[0].lower()

    def _authorize(self, shop_domain: str, query: dict[str, str]) -> None:
        """The grant screen, approved at once: 302 to the app's callback (or a plain 400 page)."""
        store = self.server.store
        if store.shop(shop_domain) is None:
            location, error = None, f"There is no store at {shop_domain}"
        else:
            location, error = store.apps.authorize(shop_domain.lower(), query)
        if location is None:
            page = f"<!DOCTYPE html><html><body><h1>{html.escape(error or 'Oauth error')}</h1></body></html>"
            self._send(400, page.encode(), content_type="text/html; charset=utf-8")
            return
        self._send(302, b"", {"Location": location}, content_type="text/html; charset=utf-8")

    def _access_token(self, shop_domain: str, raw: bytes, query: dict[str, str]) -> None:
        store = self.server.store
        shop = store.shop(shop_domain)
        if shop is None:
            self._send(404, b'{"errors":"Not Found"}')
            return
        content_type = (self.headers.get("Content-Type") or "").lower()
        params: dict[str, Any] = dict(query)
        try:
            if "application/x-www-form-urlencoded" in content_type:
                raise ValueError
            parsed = json.loads(raw) if raw else {}
            if not isinstance(parsed, dict):
                raise ValueError
            params.update(parsed)
        except ValueError:
            params.update({k: v[-1] for k, v in parse_qs(raw.decode(errors="replace")).items()})
        answer = store.apps.token_request(shop.domain, params)
        if answer.lose_response:
            self.close_connection = True
            self._abort()
            return
        self._send(answer.status, json.dumps(answer.body).encode())

    def _hang(self) -> None:
        """Hold the connection without answering until the client gives up (or the limit)."""
        deadline = time.monotonic() + HANG_LIMIT_S
        sock = self.connection
        while time.monotonic() < deadline and not self.server.stopping.is_set():
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                try:
                    if not sock.recv(1, socket.MSG_PEEK):
                        break  # client closed
                except OSError:
                    break
        self.close_connection = True
        self._abort()

    def _abort(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class StandinHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], store: Store) -> None:
        super().__init__(address, Handler)
        self.store = store
        self.stopping = threading.Event()


@dataclass
class RunningStandin:
    server: StandinHTTPServer
    thread: threading.Thread
    store: Store
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def graphql_url(self, shop: str, version: str = "2026-07") -> str:
        return f"{self.url}/shops/{shop}/admin/api/{version}/graphql.json"

    def stop(self) -> None:
        self.server.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def make_server(port: int, host: str = "127.0.0.1", store: Store | None = None) -> StandinHTTPServer:
    return StandinHTTPServer((host, port), store or Store())


def start_in_thread(port: int = 0, host: str = "127.0.0.1") -> RunningStandin:
    """Run the stand-in in a daemon thread (for tests); port 0 picks a free port."""
    server = make_server(port, host)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="standin", daemon=True
    )
    thread.start()
    return RunningStandin(
        server=server, thread=thread, store=server.store, host=host, port=server.server_address[1]
    )
