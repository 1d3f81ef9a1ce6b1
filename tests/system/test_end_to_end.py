"""The producer's five example events, through the real ingest, workers and Shopify stand-in.

What a merchant sees in Shopify after each event (PRODUCT.md §2), and what the producer reads from
the status API (INGEST.md), with the whole system running as separate processes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.expected import compare
from bench.harness import System, wait_until

EXAMPLES = Path(__file__).resolve().parents[2] / "bench" / "examples"
SHOP = "acme-nl.myshopify.com"
ORDER_1106 = "gid://shopify/Order/5196695273621"
ORDER_1107 = "gid://shopify/Order/5196695273700"
EXCHANGE_TAG = "Sendcloud Return: Exchange"
REFUND_TAG = "Sendcloud Return: Money back"
EXCHANGE_NOTE = "Graag maat M in plaats van L"
WAIT_S = 60  # a bound, not a performance claim: the assertions are about the end state

pytestmark = pytest.mark.usefixtures("system_ready")


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


@pytest.fixture(scope="module")
def system() -> Any:
    env = {"SWEEP_AFTER_S": "5", "SWEEP_INTERVAL_S": "2", "SHOPIFY_READ_TIMEOUT_S": "5"}
    with System("e2e", workers=1, concurrency=2, env=env) as running:
        running.add_shop(SHOP, "shpat_local_demo_token")
        running.standin.create_order(
            SHOP,
            "#1106",
            [
                {"id": 12695210000533, "quantity": 1, "title": "Linen shirt"},
                {"id": 12695210000534, "quantity": 2, "title": "Cotton socks"},
            ],
            order_id=5196695273621,
        )
        running.standin.create_order(
            SHOP,
            "#1107",
            [{"id": 12695210000600, "quantity": 1, "title": "Wool sweater"}],
            order_id=5196695273700,
        )
        yield running


def order_view(system: System, gid: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    state = system.standin.state(SHOP)
    order = next(o for o in state["orders"] if o["id"] == gid)
    returns = [r for r in state["returns"] if r["id"] in order["returns"]]
    return order, returns


def wait_synced(system: System, return_id: str, state: str) -> dict[str, Any]:
    def synced() -> dict[str, Any] | None:
        answer = system.status(SHOP, return_id)
        return answer if answer and answer["sync"] == "synced" and answer["state"] == state else None

    return wait_until(synced, WAIT_S, what=f"{return_id} synced at {state}")


def tracking_numbers(ret: dict[str, Any]) -> list[str]:
    return [
        d["trackingNumber"]
        for rfo in ret["reverseFulfillmentOrders"]
        for d in rfo["reverseDeliveries"]
        if d["trackingNumber"]
    ]


def test_requested_shows_a_requested_return_with_the_items(system: System) -> None:
    assert system.status(SHOP, "R-100234") is None  # unknown before its first event
    assert system.send(example("01-requested.json")) == 202
    answer = wait_synced(system, "R-100234", "requested")
    order, returns = order_view(system, ORDER_1106)
    assert [r["status"] for r in returns] == ["REQUESTED"]
    lines = {line["lineItemId"]: line["quantity"] for line in returns[0]["lines"]}
    assert lines == {"gid://shopify/LineItem/12695210000533": 1, "gid://shopify/LineItem/12695210000534": 2}
    assert order["returnStatus"] == "RETURN_REQUESTED"
    assert answer["shopify"] == {"return_id": returns[0]["id"], "status": "REQUESTED"}


def test_created_opens_it_with_tracking_tag_and_exchange_note(system: System) -> None:
    assert system.send(example("02-created.json")) == 202
    answer = wait_synced(system, "R-100234", "created")
    order, returns = order_view(system, ORDER_1106)
    assert [r["status"] for r in returns] == ["OPEN"], "the request is approved, not a second return made"
    assert tracking_numbers(returns[0]) == ["3SSCLD123456789"]
    assert EXCHANGE_TAG in order["tags"]
    assert (order["note"] or "").count(EXCHANGE_NOTE) == 1
    assert order["returnStatus"] == "IN_PROGRESS"
    assert answer["shopify"] == {"return_id": returns[0]["id"], "status": "OPEN"}


def test_a_redelivered_event_changes_nothing(system: System) -> None:
    assert system.send(example("02-created.json")) == 200
    answer = wait_synced(system, "R-100234", "created")
    order, returns = order_view(system, ORDER_1106)
    assert len(returns) == 1
    assert (order["note"] or "").count(EXCHANGE_NOTE) == 1
    assert [e["id"] for e in answer["events"]].count("evt_0002") == 1


def test_completed_closes_it(system: System) -> None:
    assert system.send(example("03-completed.json")) == 202
    answer = wait_synced(system, "R-100234", "completed")
    order, returns = order_view(system, ORDER_1106)
    assert [r["status"] for r in returns] == ["CLOSED"]
    assert order["returnStatus"] == "RETURNED"
    assert EXCHANGE_TAG in order["tags"]
    assert {e["id"]: e["status"] for e in answer["events"]} == {
        "evt_0001": "applied",
        "evt_0002": "applied",
        "evt_0003": "applied",
    }


def test_label_in_the_box_by_order_name_then_cancelled(system: System) -> None:
    assert system.send(example("04-created-label-in-the-box.json")) == 202
    wait_synced(system, "R-100240", "created")
    order, returns = order_view(system, ORDER_1107)
    assert [r["status"] for r in returns] == ["OPEN"]
    assert tracking_numbers(returns[0]) == ["JVGL0612345678"]
    assert REFUND_TAG in order["tags"]

    assert system.send(example("05-cancelled.json")) == 202
    answer = wait_synced(system, "R-100240", "cancelled")
    order, returns = order_view(system, ORDER_1107)
    assert [r["status"] for r in returns] == ["CANCELED"]
    assert REFUND_TAG not in order["tags"], "the only refund return is gone, so is its tag"
    assert order["returnStatus"] == "NO_RETURN"
    assert answer["shopify"]["status"] == "CANCELED"


def test_final_state_matches_the_independent_expectation(system: System) -> None:
    events = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    assert compare(events, system.standin.state(SHOP)) == []


def test_the_buyer_is_never_notified_by_shopify(system: System) -> None:
    def notify_flags(value: Any) -> list[Any]:
        if isinstance(value, dict):
            return [v for k, v in value.items() if k == "notifyCustomer"] + [
                f for v in value.values() for f in notify_flags(v)
            ]
        if isinstance(value, list):
            return [f for v in value for f in notify_flags(v)]
        return []

    flags = [flag for call in system.standin.calls(SHOP) for flag in notify_flags(call.get("variables"))]
    # Some mutations carry the flag as a variable (the others have it written into the document).
    assert flags, "no call carried notifyCustomer as a variable"
    assert all(flag is False for flag in flags)


def test_no_token_or_secret_in_any_log_or_in_a_dump_of_the_database(system: System) -> None:
    # Runs after the examples above: every process has logged a full run by now.
    from bench.harness import BENCH_SECRET, BENCH_STATUS_TOKEN
    from config.settings import LOCAL_FLOWER_AUTH, LOCAL_TOKEN_KEY

    secrets = {
        "the shop's access token": "shpat_local_demo_token",
        "the ingest secret": BENCH_SECRET,
        "its key bytes": BENCH_SECRET.removeprefix("whsec_"),
        "the status API token": BENCH_STATUS_TOKEN,
        "the token encryption key": LOCAL_TOKEN_KEY,
        "the Flower password": LOCAL_FLOWER_AUTH.partition(":")[2],
    }
    logs = {path.name: path.read_text(errors="replace") for path in system.log_dir.glob("*.log")}
    assert {"ingest.log", "relay.log", "worker1.log", "standin.log"} <= set(logs)
    dump = subprocess.run(
        ["pg_dump", "--data-only", "-h", "127.0.0.1", "-U", "postgres", system.database],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "shopify_calls" in dump and "acme-nl.myshopify.com" in dump
    found = {
        (what, where)
        for what, value in secrets.items()
        for where, text in [*logs.items(), ("pg_dump", dump)]
        if value in text
    }
    assert found == set()
