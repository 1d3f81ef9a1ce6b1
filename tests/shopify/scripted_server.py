"""A tiny real HTTP server that answers with a scripted sequence of responses.

Unit tests of the Shopify client need real sockets (timeouts, dropped connections, status codes,
headers) but not a Shopify: each test lists what the server says, in order, and afterwards reads
what the client sent.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer. ``drop`` closes the connection after reading the request, unanswered;
    ``delay_s`` holds the answer back (for read timeouts)."""

    status: int = 200
    body: Any = None  # dict/list -> JSON; str/bytes -> sent as is
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False


def ok(data: dict[str, Any], cost: int = 10, available: int = 1990) -> Reply:
    return Reply(body={"data": data, "extensions": {"cost": cost_block(cost, cost, available)}})


def cost_block(requested: int, actual: int | None, available: float, rate: float = 100.0) -> dict[str, Any]:
    return {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": available, "restoreRate": rate},
    }


def throttled(requested: int, available: float, rate: float) -> Reply:
    # The shape Shopify sends: HTTP 200, no data, errors[].extensions.code THROTTLED.
    return Reply(
        body={
            "errors": [
                {
                    "message": "Throttled",
                    "extensions": {
                        "code": "THROTTLED",
                        "documentation": "https://shopify.dev/api/usage/rate-limits",
                    },
                }
            ],
            "extensions": {"cost": cost_block(requested, None, available, rate)},
        }
    )


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class ScriptedServer:
    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        # Set at shutdown so handlers that are holding an answer back stop waiting at once.
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep tests quiet
                return

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                with server._lock:
                    server.received.append(Received(self.path, dict(self.headers), body))
                    reply = (
                        server.replies.pop(0)
                        if server.replies
                        else Reply(500, {"errors": "script exhausted"})
                    )
                if reply.delay_s:
                    server._stop.wait(reply.delay_s)
                if reply.drop:
                    # Read the request, then hang up without a status line.
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if isinstance(reply.body, dict | list):
                    payload = json.dumps(reply.body).encode()
                    content_type = "application/json"
                elif isinstance(reply.body, str):
                    payload = reply.body.encode()
                    content_type = "text/plain"
                else:
                    payload = reply.body or b""
                    content_type = "application/octet-stream"
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(payload)))
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (read timeout) before the answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/admin/api/{{version}}/graphql.json"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


@contextmanager
def scripted(replies: list[Reply]) -> Iterator[ScriptedServer]:
    server = ScriptedServer(replies)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def closed_port() -> int:
    """A local port nothing listens on (bound then released), for connection-refused tests."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
