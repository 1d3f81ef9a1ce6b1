"""No poisoned order: a return whose run raises fails on its own, with its reason, after the retry
policy's attempts, while the order's other returns sync; nothing is pending without a detail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from config import get_settings
from tests.apply.conftest import ShopUnderTest, event_statuses, return_row
from workers import lifecycle
from workers.apply import apply_order
from workers.store import inbox
from workers.store import returns as store
from workers.store.db import transaction

ATTEMPTS = 3


@pytest.fixture
def few_attempts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("APPLY_MAX_ATTEMPTS", str(ATTEMPTS))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _two_returns(shop: ShopUnderTest, name: str) -> tuple[int, str]:
    gid = shop.order(name, {101: 1, 102: 1})
    order_id = shop.event("created", "R-bad", order_gid=gid, items={101: 1}, event_id=f"bad-{name[1:]}")
    shop.event("created", "R-good", order_gid=gid, items={102: 1}, minutes=1, event_id=f"good-{name[1:]}")
    return order_id, gid


def _return_row_id(platform_return_id: str) -> int:
    return int(return_row(platform_return_id)["id"])


def _run_until_given_up(order_id: int) -> list[str]:
    outcomes = []
    for _ in range(ATTEMPTS):
        outcomes.append(str(apply_order(order_id).outcome))
    return outcomes


def test_an_exception_loading_one_return_fails_it_after_the_policys_attempts_and_the_other_syncs(
    shop: ShopUnderTest, few_attempts: None, monkeypatch: pytest.MonkeyPatch
):
    order_id, _ = _two_returns(shop, "#7001")
    poisoned = _return_row_id("R-bad")
    real_load = store.load_return

    def load(return_id: int) -> Any:
        # The failure the issue saw (psycopg2 reading a year-0 timestamp), at the store boundary.
        if return_id == poisoned:
            raise ValueError("year -1 is out of range")
        return real_load(return_id)

    monkeypatch.setattr(store, "load_return", load)

    # The first run syncs the good return and says why the bad one is not synced yet.
    first = apply_order(order_id)
    assert first.outcome == "retry" and first.delay_s is not None
    good = return_row("R-good")
    assert good["sync"] == "synced"
    assert len(shop.shopify_returns()) == 1
    bad = return_row("R-bad")
    assert bad["sync"] == "pending"
    assert bad["detail"].startswith(f"ValueError: year -1 is out of range; retry 1 of {ATTEMPTS - 1} in ")
    status = inbox.return_status(shop.domain, "R-bad")
    assert status is not None and status["sync"] == "pending" and status["detail"] == bad["detail"]

    # After the policy's last attempt the bad return is dead-lettered with the exception.
    outcomes = [str(apply_order(order_id).outcome) for _ in range(ATTEMPTS - 1)]
    assert outcomes == ["retry"] * (ATTEMPTS - 2) + ["failed"]
    bad = return_row("R-bad")
    assert bad["sync"] == "failed"
    assert bad["detail"] == (
        f"gave up after {ATTEMPTS} attempts: ValueError: year -1 is out of range (replay to try again)"
    )
    assert event_statuses(order_id) == {"bad-7001": "failed", "good-7001": "applied"}
    # Nothing is left for the sweep to ring forever.
    assert order_id not in store.due_orders(store.db_now(), 0)


def test_an_exception_planning_one_return_never_stops_the_others(
    shop: ShopUnderTest, few_attempts: None, monkeypatch: pytest.MonkeyPatch
):
    order_id, _ = _two_returns(shop, "#7002")
    real_plan = lifecycle.plan

    def plan(events: Any, applied: Any, shopify: Any) -> lifecycle.Plan:
        events = list(events)
        if any(e.event_return.id == "R-bad" for e in events):
            raise KeyError("a bug in the planner")
        return real_plan(events, applied, shopify)

    monkeypatch.setattr(lifecycle, "plan", plan)
    assert _run_until_given_up(order_id) == ["retry"] * (ATTEMPTS - 1) + ["failed"]
    assert return_row("R-good")["sync"] == "synced"
    bad = return_row("R-bad")
    assert (bad["sync"], bad["failures"]) == ("failed", ATTEMPTS)
    assert "KeyError: 'a bug in the planner'" in bad["detail"]
    # A replay restarts the count: once the bug is gone, it syncs.
    monkeypatch.setattr(lifecycle, "plan", real_plan)
    assert store.reset_for_replay(order_id) == 1
    assert return_row("R-bad")["failures"] == 0
    assert apply_order(order_id).outcome == "applied"
    assert return_row("R-bad")["sync"] == "synced"
    assert sorted(r["status"] for r in shop.shopify_returns()) == ["OPEN", "OPEN"]


def test_a_stored_event_that_no_longer_validates_fails_at_once_and_its_return_goes_on(shop: ShopUnderTest):
    # Given a return with two events, one of whose stored bodies breaks today's contract
    gid = shop.order("#7003", {101: 1})
    order_id = shop.event("created", "R-1", order_gid=gid, items={101: 1}, event_id="ok-1")
    shop.event("completed", "R-1", order_gid=gid, items={101: 1}, minutes=5, event_id="broken-1")
    with transaction() as cur:
        cur.execute(
            "UPDATE events SET payload = jsonb_set(payload, '{return,items}', '[]')"
            " WHERE event_id = 'broken-1'"
        )
    # When applied, the readable event syncs; the broken one is failed with the field it breaks
    assert apply_order(order_id).outcome == "applied"
    assert event_statuses(order_id) == {"ok-1": "applied", "broken-1": "failed"}
    with transaction() as cur:
        cur.execute("SELECT detail FROM events WHERE event_id = 'broken-1'")
        detail = cur.fetchone()["detail"]
    assert detail.startswith("event broken-1: failed: InvalidEvent: return.items:")
    assert [r["status"] for r in shop.shopify_returns()] == ["OPEN"]
