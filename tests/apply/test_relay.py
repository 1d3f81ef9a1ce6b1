"""The relay rings what ingest committed: at once when Redis is up, as soon as it is back when not,
and never at the cost of a request (ingest does not talk to Redis at all)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from config import get_settings
from tests.apply.conftest import ShopUnderTest, wait_until
from tests.apply.test_sweep_and_tasks import _queued_order_ids
from tests.support.net import SwitchableProxy
from workers.relay import Breaker, relay_once
from workers.store import outbox
from workers.store.db import transaction

ROOT = Path(__file__).resolve().parents[2]
ITEMS = {101: 1}


def unrung_count() -> int:
    with transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM events WHERE enqueued_at IS NULL")
        return int(cur.fetchone()["n"])


def start_relay(redis_url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.relay"],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_url, "RELAY_BACKOFF_S": "0.2", "RELAY_BACKOFF_CAP_S": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def relay(redis_client: object) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_relay(get_settings().redis_url)
    yield proc
    stop(proc)


def test_the_relay_rings_every_committed_event_once(shop: ShopUnderTest, relay, redis_client):
    orders = [
        shop.event("created", f"R-{n}", order_gid=shop.order(f"#80{n}", ITEMS), items=ITEMS) for n in range(5)
    ]
    assert wait_until(lambda: sorted(_queued_order_ids(redis_client)) == sorted(orders), 30)
    assert unrung_count() == 0
    assert relay.poll() is None


def test_with_redis_cut_off_events_wait_in_postgres_and_are_rung_when_it_is_back(
    shop: ShopUnderTest, redis_client
):
    redis = urlsplit(get_settings().redis_url)
    with SwitchableProxy(redis.hostname or "127.0.0.1", redis.port or 6379) as proxy:
        proc = start_relay(f"redis://127.0.0.1:{proxy.port}{redis.path}")
        try:
            # Given Redis unreachable for the relay
            proxy.down()
            orders = [
                shop.event("created", f"R-{n}", order_gid=shop.order(f"#81{n}", ITEMS), items=ITEMS)
                for n in range(3)
            ]
            # Then nothing is rung and nothing is lost: the events wait, the relay keeps running
            assert not wait_until(lambda: unrung_count() < 3, 3)
            assert proc.poll() is None
            # When Redis is back, every event is rung without anyone re-sending it
            proxy.up()
            assert wait_until(lambda: unrung_count() == 0, 30), proc.stderr
            # (rung, then handed out by the dispatcher a moment later)
            assert wait_until(lambda: sorted(_queued_order_ids(redis_client)) == sorted(orders), 30)
        finally:
            stop(proc)


def test_relay_once_stops_at_the_first_refused_ring_and_marks_only_what_was_rung(shop: ShopUnderTest):
    first = shop.event("created", "R-1", order_gid=shop.order("#8201", ITEMS), items=ITEMS)
    second = shop.event("created", "R-2", order_gid=shop.order("#8202", ITEMS), items=ITEMS)
    rung: list[tuple[int, int]] = []

    def ring(order_id: int, shop_id: int) -> bool:
        rung.append((order_id, shop_id))
        return order_id == first

    assert relay_once(ring) == (1, False)
    assert rung == [(first, shop.row.id), (second, shop.row.id)]
    assert [item.order_id for item in outbox.unrung()] == [second]


def test_the_breaker_waits_longer_after_each_refusal_in_a_row():
    breaker = Breaker(base_s=0.5, cap_s=4.0)
    assert breaker.allows(0.0)
    assert [breaker.failed(0.0) for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert not breaker.allows(3.9) and breaker.allows(4.0)
    breaker.succeeded()
    assert breaker.allows(0.0) and breaker.failed(0.0) == 0.5
