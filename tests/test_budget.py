"""The shared per-shop cost budget against the real Redis: the arithmetic of take, refill, settle and
give_back, and that concurrent processes never take more than the bucket holds."""

from __future__ import annotations

import math
import multiprocessing
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from config import get_settings
from workers.budget import BudgetState, Grant, ShopBudget

SHOP = "budget-test.myshopify.com"
# Real time passes between two script calls (a loaded machine, the first EVALSHA loading its
# script); figures that refill are checked to within this much of it, and only on the refill side.
ALLOWED_S = 1.0


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    """The suite's Redis database; only this module's keys are ever deleted from it."""
    connection = redis.Redis.from_url(get_settings().redis_url)
    yield connection
    connection.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test's own, emptied before and after."""
    value = f"returnsync:budget-test:{uuid.uuid4().hex}:"
    _delete_prefix(client, value)
    yield value
    _delete_prefix(client, value)


def _delete_prefix(client: redis.Redis, value: str) -> None:
    keys = list(client.scan_iter(match=f"{value}*"))
    if keys:
        client.delete(*keys)


def budget(client: redis.Redis, prefix: str, shop: str = SHOP, **kwargs: Any) -> ShopBudget:
    return ShopBudget(client, shop, key_prefix=prefix, **kwargs)


def age(client: redis.Redis, shop_budget: ShopBudget, seconds: float) -> None:
    """Pretend ``seconds`` passed since the last write, without sleeping."""
    updated = float(client.hget(shop_budget.key, "updated_at"))
    client.hset(shop_budget.key, "updated_at", repr(updated - seconds))


def near(figure: float, expected: float, rate: float) -> bool:
    """``figure`` is ``expected`` plus at most ``ALLOWED_S`` of refill at ``rate``."""
    return expected - 1e-9 <= figure <= expected + rate * ALLOWED_S + 1e-9


def status(maximum: float, available: float, rate: float) -> dict[str, float]:
    return {"maximumAvailable": maximum, "currentlyAvailable": available, "restoreRate": rate}


def test_a_missing_key_is_a_full_bucket_at_the_defaults(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=500.0, default_restore_rate=25.0)
    assert b.state() == BudgetState(maximum=500.0, available=500.0, restore_rate=25.0)
    # Looking does not keep an idle shop alive.
    assert not client.exists(b.key)


def test_take_grants_and_subtracts_on_redis_clock_with_a_ttl(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=100.0, default_restore_rate=0.0)
    grant = b.take(30)
    assert grant.granted and grant.wait_s == 0.0
    assert grant.state.available == 70.0
    assert b.state().available == 70.0
    seconds, micros = client.time()
    assert float(client.hget(b.key, "updated_at")) == pytest.approx(seconds + micros / 1e6, abs=5.0)
    assert 0 < client.pttl(b.key)


def test_a_cost_that_does_not_fit_takes_nothing_and_says_how_long(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=100.0, default_restore_rate=10.0)
    assert b.take(80).granted
    refused = b.take(50)
    assert not refused.granted
    # 20 available, 30 missing at 10/s.
    assert 3.0 - ALLOWED_S <= refused.wait_s <= 3.0
    assert near(refused.state.available, 20.0, 10.0)
    assert near(b.state().available, 20.0, 10.0)
    # Exactly what is there can be taken.
    age(client, b, 3.0)
    assert b.take(50).granted
    assert near(b.state().available, 0.0, 10.0)


def test_refill_at_the_restore_rate_up_to_the_maximum(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=100.0, default_restore_rate=10.0)
    assert b.take(100).granted
    age(client, b, 3.0)
    assert near(b.state().available, 30.0, 10.0)
    age(client, b, 1000.0)
    assert b.state().available == 100.0


def test_refill_is_measured_by_the_redis_clock(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=10_000.0, default_restore_rate=5_000.0)
    assert b.take(10_000).granted
    time.sleep(0.2)
    # At least the sleep's worth came back (no upper bound: the machine may be slow).
    assert b.state().available >= 0.2 * 5_000.0 * 0.9


def test_a_cost_above_the_maximum_can_never_fit(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=100.0, default_restore_rate=10.0)
    grant = b.take(101)
    assert grant == Grant(granted=False, wait_s=math.inf, state=grant.state)
    assert grant.state.available == 100.0
    assert b.fits_ever(100) and not b.fits_ever(100.5)


def test_without_refill_a_missing_cost_never_fits(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=100.0, default_restore_rate=0.0)
    assert b.take(60).granted
    refused = b.take(60)
    assert not refused.granted and refused.wait_s == math.inf
    assert refused.state.available == 40.0
    assert b.take(40).granted
    assert b.take(0).granted


def test_settle_refunds_the_difference_to_the_actual_cost(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=1000.0, default_restore_rate=0.0)
    assert b.take(500).granted
    assert b.settle(500, 20, None).available == 980.0
    # Unknown actual cost (a lost answer): the whole take stays charged.
    assert b.take(100).granted
    assert b.settle(100, None, None).available == 880.0
    # An actual above the request refunds nothing.
    assert b.take(100).granted
    assert b.settle(100, 150, None).available == 780.0


def test_a_refund_never_fills_beyond_the_maximum(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=100.0, default_restore_rate=0.0)
    assert b.take(10).granted
    assert b.settle(50, 0, None).available == 100.0


def test_settle_corrects_the_mirror_downwards_only(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=1000.0, default_restore_rate=50.0)
    assert b.take(100).granted
    # Shopify has less than the mirror thinks: believe it.
    state = b.settle(100, 100, status(1000, 400, 0))
    assert state.available == 400.0
    # Shopify has more (our other requests in flight are not charged there yet): keep ours.
    assert b.take(300).granted
    state = b.settle(300, 300, status(1000, 700, 0))
    assert state.available == 100.0
    # Refunds still raise it.
    assert b.take(50).granted
    assert b.settle(50, 10, status(1000, 900, 0)).available == 90.0


def test_settle_takes_maximum_and_restore_rate_from_the_report(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=1000.0, default_restore_rate=50.0)
    assert not b.fits_ever(1500)
    assert b.take(10).granted
    state = b.settle(10, 5, status(2000, 1500, 100))
    assert state.maximum == 2000.0 and state.restore_rate == 100.0
    assert near(state.available, 995.0, 50.0)
    assert b.settle(0, 0, status(2000, 995, 100)).available == 995.0
    assert b.fits_ever(1500)
    age(client, b, 5.0)
    assert near(b.state().available, 1495.0, 100.0)
    age(client, b, 100.0)
    assert b.state().available == 2000.0


def test_a_smaller_reported_maximum_caps_the_mirror(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=1000.0, default_restore_rate=0.0)
    assert b.take(10).granted
    state = b.settle(10, 10, {"maximumAvailable": 200, "restoreRate": 10})
    assert state == BudgetState(maximum=200.0, available=200.0, restore_rate=10.0)
    assert b.take(300).wait_s == math.inf


def test_a_throttled_answer_brings_the_mirror_to_shopifys_figure(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=1000.0, default_restore_rate=50.0)
    assert b.take(100).granted
    # A THROTTLED answer: no actual cost, less available than requested.
    state = b.settle(100, None, status(1000, 30, 50))
    assert near(state.available, 30.0, 50.0)
    refused = b.take(100)
    assert not refused.granted
    assert 70 / 50 - ALLOWED_S <= refused.wait_s <= 70 / 50


def test_throttled_can_be_said_outright(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=1000.0, default_restore_rate=0.0)
    assert b.take(100).granted
    # Not charged by Shopify: the whole take comes back before the downward correction.
    assert b.settle(100, None, status(1000, 950, 0), throttled=True).available == 950.0
    assert b.take(100).granted
    assert b.settle(100, None, status(1000, 20, 0), throttled=False).available == 20.0


def test_a_malformed_report_is_no_information(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=1000.0, default_restore_rate=0.0)
    assert b.take(100).granted
    report = {"maximumAvailable": 0, "currentlyAvailable": "n/a", "restoreRate": None}
    assert b.settle(100, 40, report) == BudgetState(maximum=1000.0, available=960.0, restore_rate=0.0)
    assert b.settle(0, 0, {"currentlyAvailable": "500.5"}).available == 500.5


def test_give_back_returns_a_cost_that_was_never_sent(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=100.0, default_restore_rate=0.0)
    assert b.take(70).granted
    b.give_back(50)
    assert b.state().available == 80.0
    b.give_back(50)
    assert b.state().available == 100.0


def test_two_shops_are_independent(client: redis.Redis, prefix: str) -> None:
    a = budget(client, prefix, "a.myshopify.com", default_maximum=100.0, default_restore_rate=0.0)
    b = budget(client, prefix, "b.myshopify.com", default_maximum=100.0, default_restore_rate=0.0)
    assert a.take(100).granted
    assert not a.take(1).granted
    assert b.take(60).granted
    a.settle(0, None, status(5000, 0, 10))
    assert b.state() == BudgetState(maximum=100.0, available=40.0, restore_rate=0.0)
    assert a.state().maximum == 5000.0


def test_the_key_outlives_the_refill_and_then_expires(client: redis.Redis, prefix: str) -> None:
    b = budget(client, prefix, default_maximum=1000.0, default_restore_rate=1.0, idle_ttl_s=10.0)
    assert b.take(500).granted
    # 500 points at 1/s take 500 s to come back: expiring sooner would hand them out again.
    assert client.pttl(b.key) >= 500_000
    b.give_back(500)
    assert 0 < client.pttl(b.key) <= 11_000


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_nonsense_amounts_are_refused(client: redis.Redis, prefix: str, bad: float) -> None:
    b = budget(client, prefix)
    with pytest.raises(ValueError):
        b.take(bad)
    with pytest.raises(ValueError):
        b.settle(bad, None, None)
    with pytest.raises(ValueError):
        b.give_back(bad)
    assert not client.exists(b.key)


def _hammer(url: str, prefix: str, attempts: int, start: Any, results: Any) -> None:
    connection = redis.Redis.from_url(url)
    b = ShopBudget(connection, SHOP, default_maximum=100.0, default_restore_rate=0.0, key_prefix=prefix)
    connection.ping()
    start.wait(60)  # all 8 ready before any takes, so the takes really overlap
    results.put(sum(1 for _ in range(attempts) if b.take(1).granted))
    connection.close()


def test_concurrent_processes_never_take_more_than_the_bucket(client: redis.Redis, prefix: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(9)
    results = ctx.Queue()
    url = get_settings().redis_url
    workers = [ctx.Process(target=_hammer, args=(url, prefix, 60, start, results)) for _ in range(8)]
    for worker in workers:
        worker.start()
    start.wait(60)
    granted = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(10)
        assert worker.exitcode == 0
    # 480 attempts at one point each against 100 points that never refill.
    assert sum(granted) == 100
    b = budget(client, prefix, default_maximum=100.0, default_restore_rate=0.0)
    assert b.state().available == 0.0
