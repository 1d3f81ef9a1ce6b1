"""Benchmark 1: ingest throughput and latency, the real app vs a bare endpoint, side by side.

Both run under gunicorn with ``ingest/gunicorn_conf.py`` (same workers, threads, worker class) on
loopback. Each gets the same fixed offered load (open loop: request i is due at start + i/rate,
and latency counts from when it was due, so a slow server cannot hide queueing delay). Bounded in
count and time. Uses its own database (returnsync_bench) and registers its own shop.

    .venv/bin/python -m bench.bench_ingest [duration_s] [rate_per_s]
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DB = "returnsync_bench"
BENCH_REDIS_DB = 13
SHOP = "bench-shop.myshopify.com"
CLIENT_THREADS = 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _setup_database() -> str:
    """Point this process (and the servers it starts) at the bench database, migrated, with a shop."""
    from config import get_settings
    from workers.store import db
    from workers.store.migrate import ensure_database, migrate
    from workers.store.shops import register_shop

    base = get_settings().database_url.rsplit("/", 1)[0]
    url = f"{base}/{BENCH_DB}"
    # Children inherit the environment; settings are read from it (config/settings.py). A Redis
    # database of its own too, so no running worker picks up doorbells for bench order ids.
    os.environ["DATABASE_URL"] = url
    os.environ["REDIS_URL"] = get_settings().redis_url.rsplit("/", 1)[0] + f"/{BENCH_REDIS_DB}"
    get_settings.cache_clear()
    db.close_pool()
    ensure_database(url)
    migrate()
    register_shop(SHOP, "shpat_bench")
    with db.transaction() as cur:  # every run starts from the same (empty) inbox
        cur.execute("TRUNCATE shopify_calls, attempts, events, returns, orders RESTART IDENTITY CASCADE")
    return url


def _start(app_spec: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "ingest/gunicorn_conf.py", app_spec],
        cwd=ROOT,
        env={**os.environ, "INGEST_HOST": "127.0.0.1", "INGEST_PORT": str(port), "LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
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


def _requests(count: int, tag: str) -> list[tuple[bytes, dict[str, str]]]:
    """Pre-signed, distinct events (10 returns per order, realistic re-use of order rows)."""
    from config import get_settings
    from ingest.signatures import sign

    template = json.loads((Path("/work/shared/spec/examples") / "02-created.json").read_text())
    secret = get_settings().ingest_secrets[0]
    out = []
    for i in range(count):
        body = dict(template, id=f"evt_bench_{tag}_{i}", shop=SHOP)
        body["return"] = dict(
            template["return"], id=f"R-{tag}-{i}", order={"id": f"gid://shopify/Order/{i // 10 + 1}"}
        )
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **sign(raw, body["id"], secret)}
        out.append((raw, headers))
    return out


def _drive(port: int, payloads: list[tuple[bytes, dict[str, str]]], rate: float) -> dict[str, Any]:
    """Open-loop load: each request is due at start + i/rate; latency runs from that moment."""
    due: queue.Queue[tuple[float, bytes, dict[str, str]] | None] = queue.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while (item := due.get()) is not None:
            at, raw, headers = item
            delay = at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                conn.request("POST", "/v1/return-events", body=raw, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                status = 0
            done = time.monotonic()
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(done - at)
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENT_THREADS)]
    for thread in threads:
        thread.start()
    start = time.monotonic() + 0.2
    for i, (raw, headers) in enumerate(payloads):
        due.put((start + i / rate, raw, headers))
    for _ in threads:
        due.put(None)
    for thread in threads:
        thread.join(timeout=len(payloads) / rate + 60)
    elapsed = max(time.monotonic() - start, 1e-9)
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
        )

    accepted = statuses.get(202, 0)
    return {
        "offered_per_s": rate,
        "sent": len(payloads),
        "accepted": accepted,
        "statuses": statuses,
        "accepted_per_s": round(accepted / elapsed, 1),
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
    }


def _flush_bench_redis() -> None:
    """Drop the doorbells the real app rang during the run (nobody consumes the bench's Redis db)."""
    import redis

    from config import get_settings

    client = redis.Redis.from_url(get_settings().redis_url)
    try:
        client.flushdb()
    except redis.RedisError:
        pass
    finally:
        client.close()


def run(duration_s: float = 10.0, rate: float = 200.0) -> dict[str, Any]:
    """Measure the bare endpoint and the real app at the same offered load; return both + ratios."""
    duration_s = max(1.0, min(duration_s, 120.0))  # bounded whatever the caller asks
    count = int(duration_s * rate)
    _setup_database()
    results: dict[str, Any] = {"duration_s": duration_s, "offered_per_s": rate}
    for name, spec in (("bare", "ingest.bare:create_app()"), ("real", "ingest.wsgi:application")):
        payloads = _requests(count, name)
        proc, port = _start(spec)
        try:
            _drive(port, payloads[: max(1, count // 20)], rate)  # warm-up: connections, imports
            results[name] = _drive(port, payloads[max(1, count // 20) :], rate)
        finally:
            _stop(proc)
    _flush_bench_redis()
    bare, real = results["bare"], results["real"]
    results["ratio_accepted_per_s"] = round(real["accepted_per_s"] / max(bare["accepted_per_s"], 1e-9), 3)
    results["ratio_p50"] = round(real["p50_ms"] / max(bare["p50_ms"], 1e-9), 2)
    results["ratio_p99"] = round(real["p99_ms"] / max(bare["p99_ms"], 1e-9), 2)
    return results


def main() -> int:
    duration = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 200.0
    results = run(duration, rate)
    for name in ("bare", "real"):
        r = results[name]
        print(
            f"{name:5} offered {r['offered_per_s']:.0f}/s  accepted {r['accepted_per_s']:.1f}/s "
            f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  statuses {r['statuses']}"
        )
    print(
        f"real/bare: accepted/s x{results['ratio_accepted_per_s']}, p50 x{results['ratio_p50']}, "
        f"p99 x{results['ratio_p99']}"
    )
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
