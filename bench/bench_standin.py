"""Throughput of the stand-in: simple mutations/s with N concurrent keep-alive clients.

    .venv/bin/python bench/bench_standin.py [--clients 8] [--seconds 5] [--url http://127.0.0.1:8081]

Without --url an in-process stand-in is started on a free loopback port. Each client owns one
keep-alive connection (http.client) and sends `tagsAdd` mutations on its own order for a fixed
time; the figure printed is completed 200 responses per second. Loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from standin.admin import StandinAdmin  # noqa: E402
from standin.server import start_in_thread  # noqa: E402

SHOP = "bench.myshopify.com"
TOKEN = "shpat_bench"
MUTATION = (
    "mutation Bench($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) "
    "{ node { id } userErrors { field message } } }"
)


def client(host: str, port: int, order_gid: str, stop_at: float, counts: list[int], index: int) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    path = f"/shops/{SHOP}/admin/api/2026-07/graphql.json"
    headers = {"Content-Type": "application/json", "X-Shopify-Access-Token": TOKEN}
    n = 0
    while time.monotonic() < stop_at:
        body = json.dumps({"query": MUTATION, "variables": {"id": order_gid, "tags": [f"t{n % 5}"]}})
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        response.read()
        if response.status == 200:
            n += 1
    counts[index] = n
    conn.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--url", help="a running stand-in (loopback); default: start one")
    args = parser.parse_args()
    running = None
    if args.url:
        base = args.url
    else:
        running = start_in_thread()
        base = running.url
    parts = urlsplit(base)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("loopback only")
    admin = StandinAdmin(base)
    # A bucket large enough that throttling never limits the measurement.
    admin.create_shop(SHOP, TOKEN, bucket_size=10**9, restore_rate=10**6)
    orders = [admin.create_order(SHOP, f"#B{i}", [{"quantity": 1}])["id"] for i in range(args.clients)]
    # Warm the schema and document caches outside the measured window.
    warm = threading.Thread(
        target=client, args=(parts.hostname, parts.port, orders[0], time.monotonic() + 0.5, [0], 0)
    )
    warm.start()
    warm.join()
    counts = [0] * args.clients
    stop_at = time.monotonic() + args.seconds
    threads = [
        threading.Thread(target=client, args=(parts.hostname, parts.port, orders[i], stop_at, counts, i))
        for i in range(args.clients)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    total = sum(counts)
    print(
        f"{total / elapsed:.0f} mutations/s ({total} in {elapsed:.1f} s, {args.clients} keep-alive clients)"
    )
    if running:
        running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
