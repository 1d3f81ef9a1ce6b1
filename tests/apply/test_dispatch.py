"""Fair dispatch (workers/dispatch.py) against a real Redis: one pending doorbell per order, turns
between shops, per-shop and total limits, due times, pauses and runs that never finished."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import MAKE_RUN_WORKER_SLOTS, Settings, dispatch_share
from workers.dispatch import Dispatcher


def make(client: redis.Redis, **limits: float) -> Dispatcher:
    options = {"max_in_flight": 100, "shop_max_in_flight": 100, "in_flight_ttl_s": 60.0, **limits}
    return Dispatcher(
        client,
        max_in_flight=int(options["max_in_flight"]),
        shop_max_in_flight=int(options["shop_max_in_flight"]),
        in_flight_ttl_s=float(options["in_flight_ttl_s"]),
    )


def handed(d: Dispatcher, limit: int = 100) -> list[int]:
    return [order for order, _ in d.dispatch(limit).orders]


def test_ringing_an_order_that_already_waits_adds_nothing(redis_client: redis.Redis):
    d = make(redis_client)
    for _ in range(5):
        d.ring(shop_id=1, order_id=10)
    assert handed(d) == [10]
    assert handed(d) == []


def test_an_order_rung_while_it_runs_is_handed_out_again_only_after_its_run(redis_client: redis.Redis):
    d = make(redis_client)
    d.ring(1, 10)
    assert handed(d) == [10]
    assert d.ring(1, 10) is False  # running: remembered, not queued beside the run
    assert handed(d) == []
    assert d.finish(10) is True  # the dispatcher knows the shop of a run it handed out
    assert handed(d) == [10]
    d.finish(10, 1)
    assert handed(d) == []  # not rung during the second run: nothing more
    # A run it never handed out (a message from before a Redis flush) needs its shop named
    assert d.finish(99, again_in_s=0) is False
    assert d.finish(99, 1, again_in_s=0) is True
    assert handed(d) == [99]


def test_a_quiet_shop_is_served_before_a_backlogged_shops_next_order(redis_client: redis.Redis):
    d = make(redis_client)
    for order in range(100, 200):
        d.ring(shop_id=1, order_id=order)
    handed(d, limit=3)  # the busy shop has been served
    d.ring(shop_id=2, order_id=7)
    d.ring(shop_id=3, order_id=8)
    # Each waits at most one more turn of the busy shop, whatever its backlog.
    first = handed(d, limit=3)
    assert {7, 8} <= set(first)
    assert len([order for order in first if order >= 100]) == 1


def test_shops_take_turns(redis_client: redis.Redis):
    d = make(redis_client)
    for shop in (1, 2, 3):
        for n in range(10):
            d.ring(shop, shop * 100 + n)
    out = d.dispatch(9).orders
    assert sorted(shop for _, shop in out) == [1, 1, 1, 2, 2, 2, 3, 3, 3]


def test_a_shop_never_has_more_than_its_share_in_flight(redis_client: redis.Redis):
    d = make(redis_client, shop_max_in_flight=2)
    for n in range(10):
        d.ring(1, 100 + n)
    d.ring(2, 200)
    first = handed(d)
    assert len([o for o in first if o >= 100 and o < 200]) == 2
    assert 200 in first
    assert handed(d) == []
    d.finish(first[0], 1)
    assert len(handed(d)) == 1  # one slot of shop 1 free again


def test_no_more_than_the_fleet_can_run_is_in_flight(redis_client: redis.Redis):
    d = make(redis_client, max_in_flight=3)
    for shop in range(1, 6):
        d.ring(shop, shop)
    first = handed(d)
    assert len(first) == 3
    assert handed(d) == []
    assert d.state().in_flight == 3
    # Ready work waits for a run to end, and a run's end dispatches: no wake-up to spin on
    assert d.dispatch().wake_in_s is None
    d.finish(first[0], first[0])
    assert len(handed(d)) == 1


def test_a_delayed_ring_is_handed_out_once_it_is_due(redis_client: redis.Redis):
    d = make(redis_client)
    d.ring(1, 10, delay_s=0.4)
    handout = d.dispatch()
    assert handout.orders == ()
    assert handout.wake_in_s is not None and 0 < handout.wake_in_s <= 0.4
    time.sleep(handout.wake_in_s + 0.05)
    assert handed(d) == [10]


def test_an_earlier_ring_wins_over_a_later_one(redis_client: redis.Redis):
    d = make(redis_client)
    d.ring(1, 10, delay_s=300)
    d.ring(1, 10, delay_s=0)  # a new event: the backoff does not hold it back
    assert handed(d) == [10]


def test_a_paused_shop_waits_while_the_others_are_served(redis_client: redis.Redis):
    d = make(redis_client)
    d.pause(1, 300)
    d.ring(1, 10)
    d.ring(2, 20)
    assert handed(d) == [20]
    d.pause(1, 0)  # a shorter pause does not cut a longer one short
    assert handed(d) == []


def test_a_run_that_comes_back_later_is_due_then(redis_client: redis.Redis):
    d = make(redis_client)
    d.ring(1, 10)
    handed(d)
    d.finish(10, 1, again_in_s=300)
    handout = d.dispatch()
    assert handout.orders == ()
    assert handout.wake_in_s is not None and handout.wake_in_s > 290


def test_an_order_rung_during_its_run_is_due_now_even_if_the_run_said_later(redis_client: redis.Redis):
    d = make(redis_client)
    d.ring(1, 10)
    handed(d)
    d.ring(1, 10)  # new work arrived while it ran
    d.finish(10, 1, again_in_s=300)
    assert handed(d) == [10]


def test_a_run_that_never_finished_is_handed_out_again_after_the_in_flight_ttl(redis_client: redis.Redis):
    d = make(redis_client, in_flight_ttl_s=0.3)
    d.ring(1, 10)
    assert handed(d) == [10]
    assert handed(d) == []
    time.sleep(0.35)  # its worker died with the message
    assert handed(d) == [10]


def test_a_run_that_keeps_touching_its_place_keeps_it_past_the_in_flight_ttl(redis_client: redis.Redis):
    d = make(redis_client, max_in_flight=1, in_flight_ttl_s=0.3)
    d.ring(1, 10)
    d.ring(2, 20)
    assert handed(d) == [10]
    for _ in range(4):  # a long run renewing its lease, 0.4 s in all
        time.sleep(0.1)
        assert d.touch(10) is True
    # Its place is still taken: neither a second copy of it nor another order was handed out
    assert handed(d) == []
    d.finish(10)
    assert handed(d) == [20]
    assert d.touch(10) is False  # a finished run has no place to keep


def test_a_refused_publish_puts_the_order_back(redis_client: redis.Redis):
    d = make(redis_client)
    d.ring(1, 10)
    sent, _ = d.drain(lambda order: False)
    assert sent == 0
    assert d.state().in_flight == 0
    assert d.state().orders_ready == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("ring"), st.integers(1, 4), st.integers(1, 12)),
            st.tuples(st.just("dispatch"), st.integers(1, 5), st.just(0)),
            st.tuples(st.just("finish"), st.integers(0, 20), st.just(0)),
        ),
        max_size=60,
    )
)
def test_no_order_is_ever_handed_out_twice_at_once_and_every_rung_order_runs(
    redis_client: redis.Redis, steps: list[tuple[str, int, int]]
):
    redis_client.flushdb()
    d = make(redis_client, max_in_flight=4, shop_max_in_flight=2)
    shop_of: dict[int, int] = {}
    running: list[int] = []
    owed: set[int] = set()  # rung, and not run since
    for op, a, b in steps:
        if op == "ring":
            order = a * 100 + b
            shop_of.setdefault(order, a)
            d.ring(shop_of[order], order)
            owed.add(order)
        elif op == "dispatch":
            for order, shop in d.dispatch(a).orders:
                assert order not in running
                assert shop == shop_of[order]
                running.append(order)
                owed.discard(order)
            assert len(running) <= 4
            for shop in set(shop_of.values()):
                assert sum(1 for o in running if shop_of[o] == shop) <= 2
        elif running:
            order = running.pop(a % len(running))
            d.finish(order, shop_of[order])
    # Every run ends; every order rung since its last run start is handed out again.
    while running or owed:
        for order in running:
            d.finish(order, shop_of[order])
        running = []
        out = handed(d)
        assert out or not owed, f"rung but never handed out: {owed}"
        running.extend(out)
        owed.difference_update(out)


@pytest.mark.parametrize("bad", [float("nan"), -5.0, float("inf")])
def test_a_nonsense_delay_means_now(redis_client: redis.Redis, bad: float):
    d = make(redis_client)
    d.ring(1, 10, delay_s=bad)
    assert handed(d) == [10]


def test_a_run_it_did_not_hand_out_still_comes_back(redis_client: redis.Redis):
    # A message from before a Redis flush: the dispatcher never saw it, its run asks to come back.
    d = make(redis_client)
    d.finish(10, 1, again_in_s=0)
    assert handed(d) == [10]


def test_a_run_that_spent_its_shops_budget_pauses_the_shop(redis_client: redis.Redis):
    d = make(redis_client)
    d.ring(1, 10)
    d.ring(1, 11)
    d.ring(2, 20)
    first = d.dispatch(1).orders
    assert first == ((10, 1),)
    d.finish(10, again_in_s=300, pause_shop_s=300)  # the dispatcher knows the shop of its own runs
    assert handed(d) == [20]  # shop 1 waits for its bucket; the other shop goes on


def test_make_runs_worker_always_has_a_free_slot_for_the_dispatchers_runs():
    # A gevent worker whose every slot holds a message stops fetching until its next 2 s poll:
    # the default hand-out must stay below the slots the Procfile gives the worker.
    procfile = (Path(__file__).resolve().parents[2] / "Procfile").read_text()
    (worker,) = [line for line in procfile.splitlines() if line.startswith("worker:")]
    slots = int(re.search(r"--concurrency (\d+)", worker)[1])
    assert slots == MAKE_RUN_WORKER_SLOTS
    assert Settings().dispatch_max_in_flight == dispatch_share(slots) < slots
    assert [dispatch_share(n) for n in (1, 2, 5, 32, 100, 125)] == [1, 1, 4, 26, 80, 100]
