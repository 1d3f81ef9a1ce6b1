"""The shared per-shop budget in front of the real client: workers of one shop, in threads with
their own clients, take each request's cost from one Redis mirror before sending, so the
stand-in (playing Shopify's leaky bucket) answers THROTTLED (almost) never."""

from __future__ import annotations

import threading

import pytest
import redis

from standin.admin import StandinAdmin
from standin.server import RunningStandin
from workers import budget as budget_module
from workers.budget import BudgetGate, CostBook, ShopBudget
from workers.shopify import documents as docs
from workers.shopify.client import CostTooHigh, Endpoint, ShopifyClient, StaticToken, Throttled

DOMAIN = "budget-gate.myshopify.com"
SNAPSHOT = {k: v for k, v in docs.SNAPSHOT_PAGES.items() if k != "reasons"}
TOKEN = "shpat_budget_gate"


@pytest.fixture
def admin(standin: RunningStandin) -> StandinAdmin:
    admin = StandinAdmin(standin.url)
    admin.reset()
    return admin


def client(standin: RunningStandin, gate: BudgetGate | None) -> ShopifyClient:
    url = f"{standin.url}/shops/{DOMAIN}/admin/api/2026-07/graphql.json"
    return ShopifyClient(Endpoint(DOMAIN, url, StaticToken(TOKEN)), meter=gate, sleep=lambda s: None)


def gate(redis_client: redis.Redis, costs: CostBook, *, max_wait_s: float = 30.0) -> BudgetGate:
    import time

    budget = ShopBudget(redis_client, DOMAIN, default_maximum=30, default_restore_rate=10)
    return BudgetGate(budget, max_wait_s=max_wait_s, sleep=time.sleep, costs=costs)


def test_workers_sharing_the_budget_are_not_throttled(
    standin: RunningStandin, admin: StandinAdmin, redis_client: redis.Redis
):
    # Given a shop with a small bucket (30 points, 10/s) and one known cost of a read
    admin.create_shop(DOMAIN, TOKEN, bucket_size=30, restore_rate=10)
    admin.create_order(DOMAIN, "#1", [{"title": "Shirt", "quantity": 1}])
    costs = CostBook()
    client(standin, gate(redis_client, costs)).execute(docs.FIND_ORDER_BY_NAME, {"query": "name:#1"})
    # When six workers read as fast as they can, together asking far more than the refill
    errors: list[BaseException] = []

    def worker() -> None:
        c = client(standin, gate(redis_client, costs))
        try:
            for _ in range(8):
                c.execute(docs.FIND_ORDER_BY_NAME, {"query": "name:#1"})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Then Shopify executed every request and refused none of them
    calls = admin.calls(DOMAIN)
    assert len([c for c in calls if not c.get("throttled")]) == 49
    assert [c for c in calls if c.get("throttled")] == []


def test_without_the_budget_the_same_load_is_throttled(
    standin: RunningStandin, admin: StandinAdmin, redis_client: redis.Redis
):
    # The control of the test above: the same workers, each on its own, collide.
    admin.create_shop(DOMAIN, TOKEN, bucket_size=30, restore_rate=10)
    admin.create_order(DOMAIN, "#1", [{"title": "Shirt", "quantity": 1}])

    def worker() -> None:
        c = client(standin, None)
        for _ in range(8):
            try:
                c.execute(docs.FIND_ORDER_BY_NAME, {"query": "name:#1"})
            except Throttled:
                pass

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [c for c in admin.calls(DOMAIN) if c.get("throttled")] != []


def test_a_long_wait_for_the_bucket_is_handed_back_instead_of_slept(
    standin: RunningStandin, admin: StandinAdmin, redis_client: redis.Redis
):
    admin.create_shop(DOMAIN, TOKEN, bucket_size=30, restore_rate=1)
    admin.create_order(DOMAIN, "#1", [{"title": "Shirt", "quantity": 1}])
    costs = CostBook()
    c = client(standin, gate(redis_client, costs, max_wait_s=1.0))
    c.execute(docs.FIND_ORDER_BY_NAME, {"query": "name:#1"})  # learns the cost and the 1 point/s refill
    sent = len(admin.calls(DOMAIN))
    with pytest.raises(Throttled) as raised:
        for _ in range(40):
            c.execute(docs.FIND_ORDER_BY_NAME, {"query": "name:#1"})
    assert raised.value.retry_after_s is not None and raised.value.retry_after_s > 1.0
    # nothing was sent that Shopify would have refused
    assert [call for call in admin.calls(DOMAIN)[sent:] if call.get("throttled")] == []


def test_a_read_the_bucket_can_never_hold_fails_clearly_without_being_resent(
    standin: RunningStandin, admin: StandinAdmin, redis_client: redis.Redis
):
    # Given a shop whose whole bucket is smaller than the order read's requested cost
    admin.create_shop(DOMAIN, TOKEN, bucket_size=40, restore_rate=20)
    order = admin.create_order(DOMAIN, "#1", [{"title": "Shirt", "quantity": 1}])
    budget_module._probes.clear()
    c = client(standin, gate(redis_client, CostBook()))
    c.execute(docs.ORDER_SNAPSHOT, {"id": order["id"], **SNAPSHOT})  # the first answer teaches the figures
    # (once a minute the read goes out anyway, in case the shop's bucket has grown since)
    try:
        c.execute(docs.ORDER_SNAPSHOT, {"id": order["id"], **SNAPSHOT})
    except Throttled:
        pass
    # Then every further try is refused before it is sent, naming the cost and the bucket
    sent = len(admin.calls(DOMAIN))
    for _ in range(3):
        with pytest.raises(
            CostTooHigh, match=r"OrderSnapshot requests \d+ cost points; this shop can serve at most 40"
        ):
            c.execute(docs.ORDER_SNAPSHOT, {"id": order["id"], **SNAPSHOT})
    assert len(admin.calls(DOMAIN)) == sent


def test_a_query_above_shopifys_single_query_limit_is_cost_too_high(
    standin: RunningStandin, admin: StandinAdmin, redis_client: redis.Redis
):
    admin.create_shop(DOMAIN, TOKEN, max_query_cost=100)
    order = admin.create_order(DOMAIN, "#1", [{"title": "Shirt", "quantity": 1}])
    c = client(standin, gate(redis_client, CostBook()))
    with pytest.raises(CostTooHigh, match="at most 100"):
        c.execute(docs.ORDER_SNAPSHOT, {"id": order["id"], **SNAPSHOT})


def test_without_redis_requests_go_out_unmetered(standin: RunningStandin, admin: StandinAdmin):
    admin.create_shop(DOMAIN, TOKEN)
    order = admin.create_order(DOMAIN, "#1", [{"title": "Shirt", "quantity": 1}])
    nowhere = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    budget = ShopBudget(nowhere, DOMAIN)
    c = client(standin, BudgetGate(budget, max_wait_s=1.0, costs=CostBook()))
    data = c.execute(docs.ORDER_SNAPSHOT, {"id": order["id"], **SNAPSHOT})
    assert data["order"]["id"] == order["id"]
