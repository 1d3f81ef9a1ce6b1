"""The real server stack: gunicorn (gevent) running web.wsgi, spoken to over loopback HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from config import get_settings
from tests.support.net import CountingListener, free_port
from tests.web.conftest import SHOP, encode, example, mutated, secret
from web.signatures import sign
from workers.store import shops
from workers.store.db import transaction

ROOT = Path(__file__).resolve().parents[2]


def start_gunicorn(**env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "web/gunicorn_conf.py", "web.wsgi:application"],
        cwd=ROOT,
        env={**os.environ, "INGEST_HOST": "127.0.0.1", "INGEST_PORT": str(port), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("gunicorn exited: " + proc.stderr.read().decode()[-2000:])
        try:
            if requests.get(base + "/healthz", timeout=2).status_code == 200:
                return proc, base
        except requests.RequestException:  # not listening yet, or workers still booting
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("gunicorn did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def server(shop: shops.Shop) -> Iterator[str]:
    proc, base = start_gunicorn()
    yield base
    stop(proc)


@pytest.fixture
def server_without_postgres(database: str) -> Iterator[str]:
    # Nothing listens on this port: exactly what the app sees while Postgres is down.
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/returnsync"
    proc, base = start_gunicorn(DATABASE_URL=dead)
    yield base
    stop(proc)


def signed_post(base: str, body: dict, **kwargs: object) -> requests.Response:
    raw = encode(body)
    headers = {"Content-Type": "application/json", **sign(raw, body["id"], secret())}
    return requests.post(base + "/v1/return-events", data=raw, headers=headers, timeout=10, **kwargs)


def test_given_gunicorn_when_events_arrive_then_202_then_200_then_the_status_is_readable(server: str) -> None:
    assert signed_post(server, example("01")).status_code == 202
    again = signed_post(server, example("01"))
    assert (again.status_code, again.json()) == (200, {"id": "evt_0001", "status": "duplicate"})
    token = {"Authorization": f"Bearer {get_settings().status_api_token}"}
    status = requests.get(f"{server}/v1/returns/{SHOP}/R-100234", headers=token, timeout=10)
    assert status.status_code == 200
    assert status.json()["events"] == [{"id": "evt_0001", "type": "return.requested", "status": "accepted"}]
    assert requests.get(server + "/readyz", timeout=10).status_code == 200


def test_given_a_chunked_body_over_the_limit_then_413(server: str) -> None:
    body = mutated(example("01"), lambda b: b.update(padding="x" * (300 * 1024)))
    raw = encode(body)
    headers = {"Content-Type": "application/json", **sign(raw, body["id"], secret())}
    # A generator makes requests send Transfer-Encoding: chunked, with no Content-Length.
    chunks = (raw[i : i + 8192] for i in range(0, len(raw), 8192))
    response = requests.post(server + "/v1/return-events", data=chunks, headers=headers, timeout=10)
    assert response.status_code == 413
    assert "error" in response.json()


def test_given_a_chunked_body_within_the_limit_then_it_is_accepted(server: str) -> None:
    raw = encode(example("02"))
    headers = {"Content-Type": "application/json", **sign(raw, "evt_0002", secret())}
    chunks = (raw[i : i + 100] for i in range(0, len(raw), 100))
    response = requests.post(server + "/v1/return-events", data=chunks, headers=headers, timeout=10)
    assert response.status_code == 202


def test_given_postgres_unreachable_then_503_with_retry_after_and_not_ready(
    server_without_postgres: str,
) -> None:
    response = signed_post(server_without_postgres, example("01"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(get_settings().ingest_retry_after_s)
    assert set(response.json()) == {"error"}
    ready = requests.get(server_without_postgres + "/readyz", timeout=10)
    assert ready.status_code == 503 and "Retry-After" in ready.headers
    # Alive, just not ready: an orchestrator should not restart it for a database outage.
    assert requests.get(server_without_postgres + "/healthz", timeout=10).status_code == 200
    token = {"Authorization": f"Bearer {get_settings().status_api_token}"}
    status = requests.get(f"{server_without_postgres}/v1/returns/{SHOP}/R-1", headers=token, timeout=10)
    assert status.status_code == 503
    # Checks that come before storage still answer as usual.
    assert (
        requests.post(
            server_without_postgres + "/v1/return-events",
            data=b"{}",
            timeout=10,
            headers={"Content-Type": "text/plain"},
        ).status_code
        == 415
    )


def enqueued_at() -> list[object]:
    with transaction() as cur:
        cur.execute("SELECT enqueued_at FROM events ORDER BY id")
        return [row["enqueued_at"] for row in cur.fetchall()]


def test_given_redis_unreachable_then_ingest_answers_without_ever_calling_it(shop: shops.Shop) -> None:
    # Given an ingest instance whose "Redis" is a listener that counts every connection
    with CountingListener() as fake_redis:
        proc, base = start_gunicorn(REDIS_URL=f"redis://127.0.0.1:{fake_redis.port}/0")
        try:
            bodies = [mutated(example("01"), lambda b, i=i: b.update(id=f"evt_nr_{i}")) for i in range(24)]
            with ThreadPoolExecutor(max_workers=12) as pool:
                codes = list(pool.map(lambda body: signed_post(base, body).status_code, bodies))
        finally:
            stop(proc)
        # Then every event is accepted, and the request path never opened a connection to Redis
        assert codes == [202] * 24
        assert fake_redis.accepted == 0
    # The events wait, unrung, for the relay (workers/relay.py), which rings them when it can.
    assert enqueued_at() == [None] * 24


def test_given_a_client_that_stalls_mid_body_then_408_and_valid_requests_still_pass(shop: shops.Shop) -> None:
    proc, base = start_gunicorn(INGEST_BODY_TIMEOUT_S="2")
    stalled: list[socket.socket] = []
    try:
        # Given forty connections that send headers and half a body, then nothing
        port = int(base.rsplit(":", 1)[1])
        raw = encode(example("01"))
        head = (
            f"POST /v1/return-events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n"
        ).encode()
        for _ in range(40):
            conn = socket.create_connection(("127.0.0.1", port), timeout=30)
            conn.sendall(head + raw[: len(raw) // 2])
            stalled.append(conn)
        # When valid events arrive meanwhile, each is answered
        codes = [
            signed_post(base, mutated(example("02"), lambda b, i=i: b.update(id=f"evt_ok_{i}"))).status_code
            for i in range(20)
        ]
        assert codes == [202] * 20
        # And the stalled clients are answered 408 once the body timeout has passed
        answers = {conn.recv(200).split(b"\r\n", 1)[0][:12] for conn in stalled}
        assert answers == {b"HTTP/1.1 408"}
    finally:
        for conn in stalled:
            conn.close()
        stop(proc)


def test_gunicorn_never_logs_a_request_line(shop: shops.Shop) -> None:
    # An OAuth callback's query carries a single-use code and an HMAC; no log line may hold them.
    proc, base = start_gunicorn(LOG_LEVEL="INFO")
    try:
        requests.get(base + "/shopify/callback?code=secret-oauth-code-123&hmac=abc&shop=x", timeout=10)
        requests.get(base + "/v1/returns/acme-nl.myshopify.com/R-secret-path-1", timeout=10)
    finally:
        stop(proc)
    log = proc.stderr.read().decode()
    assert "secret-oauth-code-123" not in log and "R-secret-path-1" not in log
    assert "Booting worker" in log  # the log was captured, with gunicorn's own lines in it


def _batch_series(base: str) -> tuple[float, float]:
    """(events, writes) of the group commit so far, from /metrics."""
    user, _, password = get_settings().metrics_basic_auth.partition(":")
    text = requests.get(base + "/metrics", auth=(user, password), timeout=10).text
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("returnsync_ingest_batch_events_sum", "returnsync_ingest_batch_events_count"):
            values[name] = float(value)
    return (
        values.get("returnsync_ingest_batch_events_sum", 0.0),
        values.get("returnsync_ingest_batch_events_count", 0.0),
    )


def test_given_many_concurrent_events_then_each_is_answered_202_and_stored_once(server: str) -> None:
    """The group commit under gunicorn's gevent workers: concurrent requests share writes (the
    histogram's writes never outnumber its events) and every event lands exactly once."""
    events_before, writes_before = _batch_series(server)
    bodies = [
        mutated(
            example("02"),
            lambda b, i=i: (b.update(id=f"evt_many_{i}"), b["return"].update(id=f"R-many-{i % 16}")),
        )
        for i in range(96)
    ]
    with ThreadPoolExecutor(max_workers=24) as pool:
        codes = list(pool.map(lambda b: signed_post(server, b).status_code, bodies))
    assert codes == [202] * 96
    with transaction() as cur:
        cur.execute("SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM events")
        assert cur.fetchone() == {"n": 96, "d": 96}
        cur.execute("SELECT count(*) AS n FROM returns")
        assert cur.fetchone() == {"n": 16}
    events_after, writes_after = _batch_series(server)
    assert events_after - events_before == 96
    assert 1 <= writes_after - writes_before <= 96
