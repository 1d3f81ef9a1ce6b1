"""Benchmark 1: ingest at saturation and under bad conditions, every side measured in one run.

All servers run under gunicorn with ``web/gunicorn_conf.py`` (same workers, worker class) on
loopback, one after the other, each against the same kind of load:

- **saturation, closed loop**: ``CLIENTS`` keep-alive connections each send the next event as soon
  as the previous one is answered, for a fixed time; figures are answers per second and the
  latency of each answer. Sides: the bare 202 endpoint (``web/bare.py``, what the stack itself
  costs), the real app with Redis up, and the real app with Redis unreachable (its REDIS_URL
  points at a closed port). Ratios: real / bare, Redis down / Redis up. Two rounds, the sides
  interleaved; each side's better round is reported, with every round's figure beside it.
- **latency at a given load, open loop**: events due at a fixed rate (latency counts from when an
  event was due, so queueing cannot hide), first alone, then while ``TRICKLERS`` connections
  trickle their bodies a byte at a time. Ratio: p99 under the flood / p99 without.

The load generator runs in processes of its own (``LOADERS``), so its CPU does not share a GIL
with the bench's bookkeeping. Uses its own database (returnsync_bench) and registers its own shop.

    .venv/bin/python -m bench.bench_ingest [seconds]
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "bench" / "examples" / "02-created.json"
BENCH_DB = "returnsync_bench"
BENCH_REDIS_DB = 13
SHOP = "bench-shop.myshopify.com"
CLIENTS = 16  # closed-loop connections in all
LOADERS = 2  # processes sharing them
OPEN_LOOP_RATE = 100.0  # events/s offered in the latency runs
TRICKLERS = 200
ROUNDS = 2  # saturation windows per side, interleaved


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _setup_database() -> None:
    """Point this process (and the servers it starts) at the bench database, migrated, with a shop."""
    os.environ["RETURNSYNC_ENV"] = "local"  # a benchmark runs on the repository's local secrets
    from config import get_settings
    from workers.store import db
    from workers.store.migrate import ensure_database, migrate
    from workers.store.shops import register_shop

    get_settings.cache_clear()
    base = get_settings().database_url.rsplit("/", 1)[0]
    url = f"{base}/{BENCH_DB}"
    # Children inherit the environment; settings are read from it (config/settings.py). A Redis
    # database of its own too; nothing rings it anyway (the request path never talks to Redis).
    os.environ["DATABASE_URL"] = url
    os.environ["REDIS_URL"] = get_settings().redis_url.rsplit("/", 1)[0] + f"/{BENCH_REDIS_DB}"
    get_settings.cache_clear()
    db.close_pool()
    ensure_database(url)
    migrate()
    register_shop(SHOP, "shpat_bench")
    _truncate()


def _truncate() -> None:
    from workers.store import db

    with db.transaction() as cur:  # every side starts from the same (empty) inbox
        cur.execute("TRUNCATE shopify_calls, attempts, events, returns, orders RESTART IDENTITY CASCADE")


def _start(app_spec: str, **env: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "web/gunicorn_conf.py", app_spec],
        cwd=ROOT,
        env={
            **os.environ,
            "INGEST_HOST": "127.0.0.1",
            "INGEST_PORT": str(port),
            "LOG_LEVEL": "WARNING",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port
        except OSError:
            time.sleep(0.1)
    _stop(proc)
    raise RuntimeError(f"{app_spec} did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _signed(tag: str, i: int, template: dict[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    """One distinct signed event (10 returns per order: order rows are re-used, as in real traffic)."""
    from web.signatures import sign

    body = dict(template, id=f"evt_bench_{tag}_{i}", shop=SHOP)
    body["return"] = dict(
        template["return"], id=f"R-{tag}-{i}", order={"id": f"gid://shopify/Order/{i // 10 + 1}"}
    )
    raw = json.dumps(body).encode()
    return raw, {"Content-Type": "application/json", **sign(raw, body["id"], secret)}


def _percentiles(latencies: list[float]) -> dict[str, float | None]:
    ordered = sorted(latencies)

    def pct(q: float) -> float | None:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2) if ordered else None

    return {"p50_ms": pct(0.50), "p99_ms": pct(0.99)}


# --- closed loop -----------------------------------------------------------------------------------


def _loader(port: int, tag: str, clients: int, seconds: float, secret: str, out: Any) -> None:
    """One load process: ``clients`` threads, each a keep-alive connection sending back to back."""
    template = json.loads(EXAMPLE.read_text())
    counter = iter(range(10**9))
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop_at = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine: list[float] = []
        seen: dict[int, int] = {}
        while time.monotonic() < stop_at:
            with lock:
                i = next(counter)
            raw, headers = _signed(tag, i, template, secret)
            started = time.monotonic()
            try:
                conn.request("POST", "/v1/return-events", body=raw, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                status = 0
            mine.append(time.monotonic() - started)
            seen[status] = seen.get(status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for status, n in seen.items():
                statuses[status] = statuses.get(status, 0) + n

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    out.put({"latencies": latencies, "statuses": statuses})


def saturate(port: int, tag: str, seconds: float) -> dict[str, Any]:
    from config import get_settings

    secret = get_settings().ingest_secrets[0]
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_loader, args=(port, f"{tag}{n}", CLIENTS // LOADERS, seconds, secret, results))
        for n in range(LOADERS)
    ]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    parts = [results.get(timeout=seconds + 120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    elapsed = max(time.monotonic() - started, 1e-9)
    latencies = [x for part in parts for x in part["latencies"]]
    statuses: dict[int, int] = {}
    for part in parts:
        for status, n in part["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    answered_2xx = sum(n for status, n in statuses.items() if 200 <= status < 300)
    return {
        "connections": CLIENTS,
        "seconds": seconds,
        "statuses": statuses,
        "answers_2xx_per_s": round(answered_2xx / elapsed, 1),
        **_percentiles(latencies),
    }


# --- open loop, with and without a slow-body flood -----------------------------------------------


def _trickle(port: int, count: int, stop: threading.Event) -> dict[str, int]:
    """``count`` connections that send headers and then one byte of body every 0.5 s, reopened
    when the server gives up on them (the body timeout): a flood that never completes a body."""
    head = (
        b"POST /v1/return-events HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    opened = {"opened": 0, "cut_by_server": 0}
    conns: list[socket.socket] = []

    def open_one() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(head + b"{")
        opened["opened"] += 1
        return sock

    for _ in range(count):
        conns.append(open_one())
    while not stop.wait(0.5):
        for index, sock in enumerate(conns):
            try:
                sock.sendall(b" ")
            except OSError:
                opened["cut_by_server"] += 1
                sock.close()
                try:
                    conns[index] = open_one()
                except OSError:
                    pass
    for sock in conns:
        sock.close()
    return opened


def open_loop(port: int, tag: str, seconds: float, tricklers: int = 0) -> dict[str, Any]:
    from config import get_settings

    secret = get_settings().ingest_secrets[0]
    template = json.loads(EXAMPLE.read_text())
    count = int(seconds * OPEN_LOOP_RATE)
    payloads = [_signed(tag, i, template, secret) for i in range(count)]
    stop = threading.Event()
    flood: dict[str, int] = {}
    flooder = None
    if tricklers:
        flooder = threading.Thread(target=lambda: flood.update(_trickle(port, tricklers, stop)), daemon=True)
        flooder.start()
        time.sleep(1.0)  # the flood is in place before the measured load starts
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    due = iter(enumerate(payloads))
    start = time.monotonic() + 0.2

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                item = next(due, None)
            if item is None:
                break
            i, (raw, headers) = item
            at = start + i / OPEN_LOOP_RATE
            if (delay := at - time.monotonic()) > 0:
                time.sleep(delay)
            try:
                conn.request("POST", "/v1/return-events", body=raw, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                status = 0
            with lock:
                latencies.append(time.monotonic() - at)
                statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    stop.set()
    if flooder is not None:
        flooder.join(timeout=10)
    return {
        "offered_per_s": OPEN_LOOP_RATE,
        "events": count,
        "statuses": statuses,
        "tricklers": tricklers,
        **({"flood": flood} if tricklers else {}),
        **_percentiles(latencies),
    }


def run(seconds: float = 10.0) -> dict[str, Any]:
    """Every ingest figure of ``make bench``, side by side; see the module docstring."""
    seconds = max(2.0, min(seconds, 60.0))  # bounded whatever the caller asks
    _setup_database()
    results: dict[str, Any] = {}
    dead_redis = f"redis://127.0.0.1:{_free_port()}/0"
    sides = (
        ("bare", "web.bare:create_app()", {}),
        ("real", "web.wsgi:application", {}),
        ("real_redis_down", "web.wsgi:application", {"REDIS_URL": dead_redis}),
    )
    # Two rounds, the sides interleaved, each side's better round reported (all rounds are kept):
    # on a 2-core machine a checkpoint or another process can take a quarter off one window, and
    # interleaving keeps such a slow stretch from landing on one side only.
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in sides}
    for round_number in range(ROUNDS):
        for name, spec, env in sides:
            _truncate()
            proc, port = _start(spec, **env)
            try:
                saturate(port, f"w{name}{round_number}", 1.0)  # warm-up: connections, imports, caches
                rounds[name].append(saturate(port, f"{name}{round_number}", seconds / ROUNDS))
            finally:
                _stop(proc)
    for name, measured in rounds.items():
        best = max(measured, key=lambda r: float(r["answers_2xx_per_s"]))
        results[f"saturation_{name}"] = {
            **best,
            "rounds_per_s": [r["answers_2xx_per_s"] for r in measured],
        }
    _truncate()
    proc, port = _start("web.wsgi:application", INGEST_BODY_TIMEOUT_S="10")
    try:
        open_loop(port, "warm", 1.0)
        results["latency_alone"] = open_loop(port, "alone", seconds)
        results["latency_slow_body_flood"] = open_loop(port, "flood", seconds, tricklers=TRICKLERS)
    finally:
        _stop(proc)
    _truncate()

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    bare, real, down = (
        results[f"saturation_{n}"]["answers_2xx_per_s"] for n in ("bare", "real", "real_redis_down")
    )
    results["ratio_real_vs_bare_per_s"] = ratio(real, bare)
    results["ratio_redis_down_vs_up_per_s"] = ratio(down, real)
    results["ratio_p99_flood_vs_alone"] = ratio(
        results["latency_slow_body_flood"]["p99_ms"], results["latency_alone"]["p99_ms"]
    )
    return results


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    results = run(seconds)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
