"""HTTP transport: Admin GraphQL endpoints, the /_standin admin API, and fault delivery.

`http.server.ThreadingHTTPServer` with HTTP/1.1 keep-alive: a thread per connection, no
framework overhead (werkzeug's dev server is several times slower). Hung requests sleep in their
own thread, so they never block others.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from standin import gateway
from standin.faults import HANG_LIMIT_S
from standin.state import Store, shop_view

GRAPHQL_HOST_PATH = re.compile(r"^/admin/api/(?P<version>[\w-]+)/graphql\.json$")
GRAPHQL_SHOP_PATH = re.compile(r"^/shops/(?P<shop>[^/]+)/admin/api/(?P<version>[\w-]+)/graphql\.json$")
SHOP_ADMIN_PATH = re.compile(r"^/_standin/shops/(?P<shop>[^/]+)(?P<rest>/.*)?$")


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def load_seed(store: Store, seed: dict[str, Any]) -> None:
    """Seed format (also --seed-file): {"shops": [{"domain", "token", "scopes"?, "bucket_size"?,
    "restore_rate"?, "throttle_mode"?, "orders": [{"name", "id"?, "line_items", "fulfilled"?,
    "tags"?, "note"?}]}]}."""
    for spec in seed.get("shops", []):
        shop = store.create_shop(
            spec["domain"],
            spec["token"],
            spec.get("scopes"),
            int(spec.get("bucket_size", 2000)),
            int(spec.get("restore_rate", 100)),
            spec.get("throttle_mode", "graphql"),
        )
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


def _num(value: Any) -> int | None:
    if value is None:
        return None
    text = str(value).rsplit("/", 1)[-1]
    return int(text) if text.isdigit() else None


def admin_dispatch(store: Store, method: str, path: str, body: dict[str, Any]) -> Any:
    """The /_standin admin API (documented in README.md). Returns a JSON-able result."""
    if path == "/_standin/health":
        return {"ok": True}
    if path == "/_standin/reset" and method == "POST":
        store.reset()
        return {"ok": True}
    if path == "/_standin/seed" and method == "POST":
        load_seed(store, body)
        return {"ok": True}
    if path == "/_standin/shops" and method == "POST":
        store.create_shop(
            body["domain"],
            body["token"],
            body.get("scopes"),
            int(body.get("bucket_size", 2000)),
            int(body.get("restore_rate", 100)),
            body.get("throttle_mode", "graphql"),
        )
        return {"ok": True}
    if path == "/_standin/shops" and method == "GET":
        return {"shops": sorted(store.shops)}
    m = SHOP_ADMIN_PATH.match(path)
    if not m:
        raise AdminError(404, f"no admin route {method} {path}")
    shop = store.shop(unquote(m["shop"]))
    if shop is None:
        raise AdminError(404, f"unknown shop {m['shop']}")
    rest = m["rest"] or ""
    if rest == "/state" and method == "GET":
        return shop_view(shop)
    if rest == "/calls" and method == "GET":
        return {"calls": list(shop.calls)}
    if rest == "/scopes" and method == "POST":
        with shop.lock:
            shop.tokens[body["token"]] = list(body.get("scopes") or [])
        return {"ok": True}
    if rest == "/throttle" and method == "POST":
        shop.bucket.configure(body.get("bucket_size"), body.get("restore_rate"))
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
        return {
            "id": ful.id,
            "line_items": [
                {"id": x.id, "line_item_id": x.line_item.id, "quantity": x.quantity} for x in ful.line_items
            ],
        }
    raise AdminError(404, f"no admin route {method} {path}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the sync and the benchmark reuse connections
    server: StandinHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the call log is the record; stderr lines per request would only slow us down

    def setup(self) -> None:
        super().setup()
        # Small JSON answers: send them now rather than wait for the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
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
        path = urlsplit(self.path).path
        store = self.server.store
        if path.startswith("/_standin"):
            try:
                body = json.loads(raw) if raw else {}
                result = admin_dispatch(store, method, path, body)
                self._send(200, json.dumps(result).encode())
            except AdminError as error:
                self._send(error.status, json.dumps({"error": str(error)}).encode())
            except (KeyError, ValueError, TypeError) as error:
                self._send(400, json.dumps({"error": f"{type(error).__name__}: {error}"}).encode())
            return
        m = GRAPHQL_SHOP_PATH.match(path)
        if m:
            domain, version = unquote(m["shop"]), m["version"]
        else:
            m = GRAPHQL_HOST_PATH.match(path)
            if not m:
                self._send(404, b'{"errors":"Not Found"}')
                return
            domain, version = (self.headers.get("Host") or "").split(":")[0], m["version"]
        if method != "POST":
            self._send(405, b'{"errors":"Method Not Allowed"}')
            return
        token = self.headers.get("X-Shopify-Access-Token")
        shop, denial = gateway.authenticate(store, domain, token)
        if denial is not None or shop is None or token is None:
            assert denial is not None
            self._send(denial.status, denial.encoded(), denial.headers)
            return
        response = gateway.handle_graphql(store, shop, token, version, raw)
        if response.fault.hang:
            self._hang()
            return
        if response.fault.lose_response:
            # Applied but never answered: drop the connection, as a proxy timeout would.
            self.close_connection = True
            self._abort()
            return
        self._send(response.status, response.encoded(), response.headers)

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
