"""The error inbox and ``diagnose``: every unsynced return explained in one sentence with its repair,
listed by category, cleared by the repair (or by itself when the cause goes)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.apply.conftest import ShopUnderTest, event_statuses, return_row
from workers import repair
from workers.apply import apply_order
from workers.diagnose import diagnose
from workers.statuses import Category, Severity
from workers.store import problems
from workers.store.db import transaction

ROOT = Path(__file__).resolve().parents[2]
ITEMS = {101: 1}


def open_problems(shop: ShopUnderTest) -> dict[str, tuple[Category, Severity]]:
    return {p.return_id: (p.category, p.severity) for p in problems.listing(shop.domain)}


def checks(shop: ShopUnderTest, return_id: str) -> dict[str, bool | None]:
    found = diagnose(shop.domain, return_id)
    assert found is not None
    return {check.name: check.ok for check in found.checks}


def test_not_fulfilled_is_explained_listed_and_clears_itself_once_fulfilled(shop: ShopUnderTest):
    gid = shop.order("#6001", ITEMS, fulfilled=False)
    order_id = shop.event("created", "R-1", order_gid=gid, items=ITEMS)
    apply_order(order_id)
    # The inbox lists it, as info: it heals by itself
    assert open_problems(shop) == {"R-1": (Category.ORDER_NOT_FULFILLED, Severity.INFO)}
    # diagnose runs the FAQ's check itself and names the repair
    found = diagnose(shop.domain, "R-1")
    assert found is not None
    assert found.sentence == "R-1 waits: order not fulfilled yet."
    assert found.repair is not None and found.repair.startswith("fulfil the order in Shopify")
    assert checks(shop, "R-1")["fulfilled"] is False and checks(shop, "R-1")["scopes"] is True
    # Once fulfilled, diagnose says so before any run; the next run syncs and solves the problem
    shop.admin.fulfill(shop.domain, gid)
    assert "The order is fulfilled now" in diagnose(shop.domain, "R-1").sentence
    assert apply_order(order_id).outcome == "applied"
    assert open_problems(shop) == {}
    [solved] = problems.listing(shop.domain, include_solved=True)
    assert (solved.category, solved.solved_by) == (Category.ORDER_NOT_FULFILLED, "sync")


def test_missing_scopes_and_the_same_item_returned_twice_are_the_faqs_other_two_checks(shop: ShopUnderTest):
    gid = shop.order("#6002", {101: 1})
    shop.event("created", "R-1", order_gid=gid, items={101: 1})
    order_id = shop.event("created", "R-2", order_gid=gid, items={101: 1}, minutes=5)
    apply_order(order_id)
    # The item of R-2 is already in R-1's return on Shopify
    assert open_problems(shop) == {"R-2": (Category.ITEM_ALREADY_RETURNED, Severity.ERROR)}
    assert checks(shop, "R-2")["already returned"] is False
    assert checks(shop, "R-1")["already returned"] is True  # its own return holds it: not "twice"
    assert "nothing to retry" in (diagnose(shop.domain, "R-2").repair or "")
    # And a token that lost the returns scopes
    shop.admin.set_scopes(shop.domain, shop.token, ["read_orders", "write_orders"])
    other = shop.event("created", "R-3", order_gid=shop.order("#6003", ITEMS), items=ITEMS)
    shop.row = shop.row  # the shop row is re-read by the run
    with transaction() as cur:
        cur.execute("UPDATE shops SET granted_scopes = NULL")  # first contact again: scopes are read
    apply_order(other)
    assert open_problems(shop)["R-3"] == (Category.MISSING_SCOPES, Severity.WARNING)
    found = diagnose(shop.domain, "R-3")
    assert {c.name: c.ok for c in found.checks}["scopes"] is False
    assert (
        found.repair == f"the merchant reinstalls the app: python -m workers.cli install-link {shop.domain}"
    )


def test_a_shop_out_of_budget_and_an_invalid_event(shop: ShopUnderTest):
    gid = shop.order("#6004", ITEMS)
    order_id = shop.event("created", "R-1", order_gid=gid, items=ITEMS)
    # A bucket of 5 points refilling 1 a second: a mutation (10) waits longer than a worker holds
    # an order for the budget, so the run hands the order back.
    shop.admin.set_throttle(shop.domain, bucket_size=5, restore_rate=1)
    assert apply_order(order_id).outcome == "throttled"
    assert open_problems(shop) == {"R-1": (Category.BUDGET, Severity.INFO)}
    assert checks(shop, "R-1")["budget"] is False
    assert diagnose(shop.domain, "R-1").repair == "nothing to do: it syncs as the shop's API budget refills"
    shop.admin.set_throttle(shop.domain, bucket_size=2000, restore_rate=100)
    # An event whose stored body no longer validates
    bad = shop.event("created", "R-2", order_gid=shop.order("#6005", ITEMS), items=ITEMS, event_id="bad-1")
    with transaction() as cur:
        cur.execute(
            "UPDATE events SET payload = jsonb_set(payload, '{return,items}', '[]') WHERE event_id = 'bad-1'"
        )
    apply_order(bad)
    assert open_problems(shop)["R-2"] == (Category.INVALID_EVENT, Severity.ERROR)
    assert return_row("R-2")["sync"] == "failed"
    assert (diagnose(shop.domain, "R-2").repair or "").startswith("the producer sends the event again")


def test_retry_and_reset_clear_the_inbox_per_return_and_per_category(shop: ShopUnderTest):
    gids = [shop.order(f"#61{n}", ITEMS, fulfilled=False) for n in range(3)]
    orders = [shop.event("created", f"R-{n}", order_gid=g, items=ITEMS) for n, g in enumerate(gids)]
    for order_id in orders:
        apply_order(order_id)
    assert set(open_problems(shop)) == {"R-0", "R-1", "R-2"}
    for gid in gids:
        shop.admin.fulfill(shop.domain, gid)
    # retry of one return, then of everything left in the category
    assert repair.retry(shop.domain, return_id="R-0") == 1
    assert set(open_problems(shop)) == {"R-1", "R-2"}
    assert repair.retry(shop.domain, category=Category.ORDER_NOT_FULFILLED) == 2
    assert open_problems(shop) == {}
    for order_id in orders:
        assert apply_order(order_id).outcome == "applied"
    assert all(set(event_statuses(o).values()) == {"applied"} for o in orders)
    # reset replays a synced return from its stored events without creating it twice
    assert repair.reset(shop.domain, return_id="R-0") == 1
    assert apply_order(orders[0]).outcome == "applied"
    assert len([r for r in shop.shopify_returns() if r["orderId"] == gids[0]]) == 1


def test_the_cli_lists_diagnoses_and_repairs(shop: ShopUnderTest):
    gid = shop.order("#6201", ITEMS, fulfilled=False)
    apply_order(shop.event("created", "R-1", order_gid=gid, items=ITEMS))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    listed = cli("inbox", "--shop", shop.domain, "--json")
    assert listed.returncode == 0, listed.stderr
    [item] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (item["return_id"], item["category"]) == ("R-1", "order_not_fulfilled")
    table = cli("returns", "--shop", shop.domain)
    assert "R-1" in table.stdout and "order_not_fulfilled" in table.stdout.splitlines()[2]
    told = cli("diagnose", shop.domain, "R-1")
    assert told.stdout.splitlines()[0] == "R-1 waits: order not fulfilled yet."
    assert "repair: fulfil the order in Shopify" in told.stdout
    timeline = cli("timeline", shop.domain, "R-1", "--json")
    kinds = {json.loads(line)["kind"] for line in timeline.stdout.splitlines()}
    assert kinds == {"event", "state", "run", "shopify"}
    solved = cli("inbox", "solve", str(item["id"]), "--comment", "asked the merchant to fulfil")
    assert solved.returncode == 0 and problems.listing(shop.domain) == []
    shops_listed = [json.loads(line) for line in cli("shops", "--json").stdout.splitlines()]
    [listed_shop] = [row for row in shops_listed if row["shop"] == shop.domain]
    # The shop's shared API budget as the run left it (learned from Shopify's answers), and its backlog
    available, maximum, rate = re.fullmatch(r"(\d+)/(\d+) \+([\d.]+)/s", listed_shop["budget"]).groups()
    assert 0 <= int(available) <= int(maximum) and float(rate) > 0
    assert (listed_shop["waiting"], listed_shop["status"]) == (1, "active")
    for command in ("shops", "returns", "inbox", "diagnose", "timeline", "retry", "reset", "status"):
        assert cli(command, "--help").returncode == 0
