"""Waiting for fulfilment, missing scopes, lost responses, Shopify outages (PRODUCT.md §3)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config import get_settings
from tests.apply.conftest import ShopUnderTest, event_statuses, return_row
from workers.apply import apply_order
from workers.retry import run_policy
from workers.shopify import client as client_module
from workers.store import inbox
from workers.store.db import transaction
from workers.store.shops import find_shop, register_shop

ITEMS = {101: 1}


def _order_row(order_id: int) -> dict:
    with transaction() as cur:
        cur.execute("SELECT * FROM orders WHERE id = %s", (order_id,))
        return dict(cur.fetchone())


def test_unfulfilled_order_waits_then_applies_once_fulfilled(shop: ShopUnderTest):
    # Given an order that is not fulfilled yet
    gid = shop.order("#3001", ITEMS, fulfilled=False)
    order_id = shop.event("created", "R-1", order_gid=gid, items=ITEMS, event_id="w1")
    # When applied, the event waits, visibly, and the order is due again after waiting_retry_s
    outcome = apply_order(order_id)
    assert outcome.outcome == "waiting"
    row = return_row("R-1")
    assert (row["sync"], row["detail"]) == ("waiting", "order not fulfilled yet")
    assert row["waiting_since"] is not None
    assert event_statuses(order_id) == {"w1": "waiting"}
    order = _order_row(order_id)
    assert order["next_run_at"] == row["waiting_since"] + timedelta(seconds=get_settings().waiting_retry_s)
    assert shop.shopify_returns() == []
    # When the order gets fulfilled and the order is applied again, the return is created
    shop.admin.fulfill(shop.domain, gid)
    assert apply_order(order_id).outcome == "applied"
    assert [r["status"] for r in shop.shopify_returns()] == ["OPEN"]
    row = return_row("R-1")
    assert (row["sync"], row["waiting_since"]) == ("synced", None)
    assert event_statuses(order_id) == {"w1": "applied"}
    assert _order_row(order_id)["next_run_at"] is None


def test_waiting_beyond_the_shops_horizon_fails(shop: ShopUnderTest):
    register_shop(shop.domain, shop.token, api_url=shop.row.api_url, waiting_horizon_s=3600)
    gid = shop.order("#3002", ITEMS, fulfilled=False)
    order_id = shop.event("created", "R-2", order_gid=gid, items=ITEMS, event_id="h1")
    apply_order(order_id)
    # Given the return has been waiting longer than the horizon
    with transaction() as cur:
        cur.execute("UPDATE returns SET waiting_since = now() - interval '2 hours'")
    assert apply_order(order_id).outcome == "applied"
    row = return_row("R-2")
    assert row["sync"] == "failed"
    assert "order not fulfilled yet after waiting" in row["detail"]
    assert event_statuses(order_id) == {"h1": "failed"}


def test_missing_scopes_wait_with_the_scopes_named_then_sync_when_fixed(shop: ShopUnderTest):
    # Given a token installed before the returns scopes existed
    shop.admin.set_scopes(shop.domain, shop.token, ["read_orders", "write_orders"])
    gid = shop.order("#3003", ITEMS)
    order_id = shop.event("created", "R-3", order_gid=gid, items=ITEMS, event_id="s1")
    # When applied, nothing is sent and the events wait, naming the missing scopes
    assert apply_order(order_id).outcome == "waiting"
    row = return_row("R-3")
    assert row["sync"] == "waiting"
    # The FAQ's first answer, with the way to do it: the shop's install link.
    assert row["detail"] == (
        "shop needs reinstall: missing scopes read_returns, write_returns: "
        f"reinstall at http://127.0.0.1:8000/shopify/install?shop={shop.domain}"
    )
    assert event_statuses(order_id) == {"s1": "waiting"}
    assert find_shop(shop.domain).missing_scopes == ("read_returns", "write_returns")
    assert shop.shopify_returns() == []
    # When the app is reinstalled with the scopes (the shop re-registered)
    shop.admin.set_scopes(
        shop.domain, shop.token, list(("read_orders", "write_orders", "read_returns", "write_returns"))
    )
    register_shop(shop.domain, shop.token, api_url=shop.row.api_url)
    # Then the waiting events sync
    assert apply_order(order_id).outcome == "applied"
    assert [r["status"] for r in shop.shopify_returns()] == ["OPEN"]
    assert event_statuses(order_id) == {"s1": "applied"}


def test_scopes_revoked_after_first_contact_mark_the_shop_for_reinstall(shop: ShopUnderTest):
    gid = shop.order("#3004", {101: 1, 102: 1})
    order_id = shop.event("created", "R-4a", order_gid=gid, items={101: 1})
    apply_order(order_id)  # first contact: scopes read and fine
    shop.admin.set_scopes(shop.domain, shop.token, ["read_orders"])
    shop.event("created", "R-4b", order_gid=gid, items={102: 1}, minutes=5, event_id="late4")
    assert apply_order(order_id).outcome == "waiting"
    assert "write_returns" in return_row("R-4b")["detail"]
    assert "shop needs reinstall" in return_row("R-4b")["detail"]
    assert event_statuses(order_id)["late4"] == "waiting"
    assert find_shop(shop.domain).needs_reinstall


def test_a_lost_response_after_return_create_leaves_exactly_one_return(shop: ShopUnderTest):
    gid = shop.order("#3005", ITEMS)
    order_id = shop.event("created", "R-5", order_gid=gid, items=ITEMS, event_id="l1")
    # Given Shopify applies mutations but the answers never arrive
    shop.admin.set_faults(shop.domain, lost_response_rate=1.0)
    first = apply_order(order_id)
    # Then the run comes back later, having adopted what returnCreate made
    assert first.outcome == "retry"
    assert len(shop.shopify_returns()) == 1
    adopted = return_row("R-5")["shopify_return_gid"]
    assert adopted == shop.shopify_returns()[0]["id"]
    # When the answers arrive again, the next run finishes without creating another return
    shop.admin.set_faults(shop.domain)
    assert apply_order(order_id).outcome == "applied"
    returns = shop.shopify_returns()
    assert len(returns) == 1 and returns[0]["id"] == adopted
    assert shop.shopify_order(gid)["tags"] == ["Sendcloud Return: Money back"]
    assert event_statuses(order_id) == {"l1": "applied"}


@pytest.fixture
def quick_failures(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SHOPIFY_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("SHOPIFY_BACKOFF_BASE_S", "0.01")
    get_settings.cache_clear()
    client_module.reset_session()
    yield
    get_settings.cache_clear()
    client_module.reset_session()


def test_shopify_down_retries_by_the_policy_then_dead_letters_as_failed(shop: ShopUnderTest, quick_failures):
    gid = shop.order("#3006", ITEMS)
    order_id = shop.event("created", "R-6", order_gid=gid, items=ITEMS, event_id="d1")
    shop.admin.set_faults(shop.domain, error_rate=1.0)
    policy = run_policy(get_settings())
    for attempt in range(1, policy.times):
        outcome = apply_order(order_id)
        assert outcome.outcome == "retry", attempt
        assert 0 <= (outcome.delay_s or 0) <= policy.ceiling(attempt)
        row = return_row("R-6")
        assert row["sync"] == "pending"
        # Never pending without a reason: what failed and when it comes back.
        assert row["detail"].startswith("ShopifyUnavailable: ") and f"retry {attempt} of" in row["detail"]
        assert event_statuses(order_id) == {"d1": "accepted"}
    final = apply_order(order_id)
    assert final.outcome == "failed"
    row = return_row("R-6")
    assert row["sync"] == "failed"
    assert row["detail"].startswith(f"gave up after {policy.times} attempts: ShopifyUnavailable: ")
    assert event_statuses(order_id) == {"d1": "failed"}
    # Dead letters are replayable: once Shopify is back, a replay applies them.
    from workers.store.returns import reset_for_replay

    shop.admin.set_faults(shop.domain)
    assert reset_for_replay(order_id) == 1
    assert apply_order(order_id).outcome == "applied"
    assert event_statuses(order_id) == {"d1": "applied"}


def test_a_throttled_shop_waits_for_its_api_budget(shop: ShopUnderTest):
    gid = shop.order("#3007", ITEMS)
    order_id = shop.event("created", "R-7", order_gid=gid, items=ITEMS)
    # A bucket of 5 points refilling 1 a second: the first read empties it, and a mutation (10
    # points) would have to wait longer than a run holds an order for the budget.
    shop.admin.set_throttle(shop.domain, bucket_size=5, restore_rate=1)
    outcome = apply_order(order_id)
    assert outcome.outcome == "throttled" and (outcome.delay_s or 0) > 0
    row = return_row("R-7")
    assert row["sync"] == "waiting" and "API budget" in row["detail"]


def test_a_run_stopped_after_an_approval_still_records_that_shopify_shows_the_return_open(
    shop: ShopUnderTest,
):
    gid = shop.order("#3009", ITEMS)
    order_id = shop.event("requested", "R-9", order_gid=gid, items=ITEMS)
    assert apply_order(order_id).outcome == "applied"
    assert return_row("R-9")["shopify_status"] == "REQUESTED"
    shop.event("created", "R-9", order_gid=gid, items=ITEMS, minutes=5, tracking="3STRACK9")
    # Given a budget that lets the approval (10 points) through but not the tracking and the tag
    # sent after it (20 together), refilling too slowly for the run to wait for it
    shop.admin.set_throttle(shop.domain, bucket_size=25, restore_rate=1)
    outcome = apply_order(order_id)
    assert outcome.outcome == "throttled"
    assert [r["status"] for r in shop.shopify_returns()] == ["OPEN"]
    # Then the return waits for the budget, and says what Shopify shows now: approved
    row = return_row("R-9")
    assert (row["sync"], row["shopify_status"]) == ("waiting", "OPEN")
    assert "API budget" in row["detail"]


def test_the_status_api_shows_what_shopify_showed_at_the_end_of_the_last_run(shop: ShopUnderTest):
    gid = shop.order("#3008", ITEMS)
    order_id = shop.event("created", "R-8", order_gid=gid, items=ITEMS)
    assert apply_order(order_id).outcome == "applied"
    shop.event("completed", "R-8", order_gid=gid, items=ITEMS, minutes=10)
    # Given Shopify closes the return but its answer is lost
    shop.admin.set_faults(shop.domain, lost_response_rate=1.0)
    assert apply_order(order_id).outcome == "retry"
    assert [r["status"] for r in shop.shopify_returns()] == ["CLOSED"]
    # When the next run finds it already CLOSED (no step left to send)
    shop.admin.set_faults(shop.domain)
    assert apply_order(order_id).outcome == "applied"
    # Then the status says CLOSED, not the OPEN of the last answer that arrived
    status = inbox.return_status(shop.domain, "R-8")
    assert status is not None
    assert (status["state"], status["sync"], status["shopify"]["status"]) == ("completed", "synced", "CLOSED")


def test_a_second_return_with_the_same_lines_never_adopts_the_first_ones_shopify_return(shop: ShopUnderTest):
    # Given an order of two units, one returned and synced
    gid = shop.order("#3007", {101: 2})
    order_id = shop.event("created", "R-7a", order_gid=gid, items={101: 1}, event_id="s1")
    assert apply_order(order_id).outcome == "applied"
    first = return_row("R-7a")["shopify_return_gid"]
    # When another platform return of the other unit, lines identical, arrives
    shop.event("created", "R-7b", order_gid=gid, items={101: 1}, minutes=1, event_id="s2")
    assert apply_order(order_id).outcome == "applied"
    # Then it gets a Shopify return of its own: the first one is owned, so not adoptable
    second = return_row("R-7b")["shopify_return_gid"]
    assert second and second != first
    assert sorted(r["id"] for r in shop.shopify_returns()) == sorted([first, second])
