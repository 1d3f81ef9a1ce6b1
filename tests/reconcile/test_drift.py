"""The drift check against the stand-in: staff change a return, a tag or the note by hand (through
the stand-in's Admin GraphQL API, as the Shopify admin would); the check reports it, or repairs it
and the sync converges again; what the sync can never undo is reported and marked a conflict."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import requests

from tests.apply.conftest import ROOT, ShopUnderTest, event_statuses, return_row
from workers.apply import apply_order
from workers.reconcile.drift import check_drift
from workers.statuses import Category
from workers.store import drifts, outbox, problems
from workers.store.db import transaction
from workers.store.drifts import DriftMode

ITEMS = {101: 1}
EXCHANGE_TAG = "Sendcloud Return: Exchange"


def operator_cli(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def by_hand(shop: ShopUnderTest, query: str, **variables: Any) -> dict[str, Any]:
    """A change made in the Shopify admin: a GraphQL call with the shop's token, not the sync's."""
    response = requests.post(
        shop.row.graphql_url,
        json={"query": query, "variables": variables},
        headers={"X-Shopify-Access-Token": shop.token},
        timeout=30,
    )
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    for payload in body["data"].values():
        assert not payload.get("userErrors"), payload
    return body["data"]


CANCEL = "mutation($id: ID!) { returnCancel(id: $id) { return { id status } userErrors { message } } }"
REOPEN = "mutation($id: ID!) { returnReopen(id: $id) { return { id status } userErrors { message } } }"
TAGS_REMOVE = (
    "mutation($id: ID!, $tags: [String!]!) { tagsRemove(id: $id, tags: $tags) { userErrors { message } } }"
)
TAGS_ADD = (
    "mutation($id: ID!, $tags: [String!]!) { tagsAdd(id: $id, tags: $tags) { userErrors { message } } }"
)
SET_NOTE = "mutation($input: OrderInput!) { orderUpdate(input: $input) { userErrors { message } } }"


def synced_exchange(
    shop: ShopUnderTest, name: str, return_id: str, *, completed: bool = False
) -> tuple[str, int]:
    """An exchange return applied by the sync: on Shopify, tagged, its note appended."""
    gid = shop.order(name, ITEMS)
    order_id = shop.event(
        "created",
        return_id,
        order_gid=gid,
        items=ITEMS,
        refund_method="exchange",
        exchange_note="Maat M graag",
    )
    if completed:
        shop.event("completed", return_id, order_gid=gid, items=ITEMS, minutes=10, refund_method=None)
    assert apply_order(order_id).outcome == "applied"
    row = return_row(return_id)
    assert row["sync"] == "synced" and row["note_appended"]
    order = shop.shopify_order(gid)
    assert EXCHANGE_TAG in order["tags"] and f"[Return {return_id}] exchange: Maat M graag" in order["note"]
    return gid, order_id


def findings(return_id: str) -> list[tuple[str, str, str, str, bool]]:
    row = return_row(return_id)
    return [
        (d.kind, d.expected, d.actual, d.action, d.resolved_at is None)
        for d in drifts.drifts_of_return(row["id"])
    ]


def shopify_holds(shop: ShopUnderTest) -> dict[str, Any]:
    """The shop's orders and returns as the stand-in holds them (not its API budget, which reads use)."""
    state = shop.state()
    return {"orders": state["orders"], "returns": state["returns"]}


def logged_calls(order_id: int) -> int:
    with transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM shopify_calls WHERE order_id = %s", (order_id,))
        row = cur.fetchone()
    assert row is not None
    return int(row["n"])


def recheck_now() -> None:
    """The next check looks at every return again (it otherwise waits DRIFT_RECHECK_S)."""
    with transaction() as cur:
        cur.execute("UPDATE returns SET drift_checked_at = NULL")


def test_a_return_cancelled_by_hand_is_reported_and_nothing_else_changes(shop: ShopUnderTest):
    _, order_id = synced_exchange(shop, "#8001", "R-1")
    gid = return_row("R-1")["shopify_return_gid"]
    # Given staff cancelled the return in the Shopify admin
    by_hand(shop, CANCEL, id=gid)
    shopify_before = shopify_holds(shop)
    logged_before = logged_calls(order_id)

    # When the drift check runs on a shop in report mode (the default)
    assert check_drift()["found"] == 1

    # Then the difference is recorded, and neither our rows nor Shopify changed
    assert findings("R-1") == [("return_status", "created", "CANCELED", "reported", True)]
    row = return_row("R-1")
    assert (row["sync"], row["applied_state"], row["shopify_status"]) == ("synced", "created", "OPEN")
    assert set(event_statuses(order_id).values()) == {"applied"}
    assert shopify_holds(shop) == shopify_before
    # Its reads are in the order's call log, like an apply run's
    assert logged_calls(order_id) > logged_before
    # And found again, it is not recorded twice
    recheck_now()
    assert check_drift() == {"checked": 1, "found": 1, "repaired": 0, "left": 0, "busy": 0}
    assert len(findings("R-1")) == 1


def test_repair_mode_marks_what_it_cannot_undo_a_conflict_and_reports_it(shop: ShopUnderTest):
    drifts.set_drift_mode(shop.row.id, DriftMode.REPAIR)
    _, order_id = synced_exchange(shop, "#8002", "R-2")
    by_hand(shop, CANCEL, id=return_row("R-2")["shopify_return_gid"])
    shopify_before = shopify_holds(shop)

    assert check_drift()["repaired"] == 0

    # A cancelled Shopify return cannot be reopened: reported, and the return says what happened
    assert findings("R-2") == [("return_status", "created", "CANCELED", "reported", True)]
    row = return_row("R-2")
    assert (row["sync"], row["applied_state"], row["shopify_status"]) == ("conflict", "created", "CANCELED")
    assert "CANCELED where created was applied" in row["detail"] and "resolve by hand" in row["detail"]
    assert set(event_statuses(order_id).values()) == {"applied"}
    assert shopify_holds(shop) == shopify_before
    assert outbox.unrung() == []
    # Checked again, nothing is marked or recorded twice
    recheck_now()
    before = return_row("R-2")
    assert check_drift()["found"] == 1
    assert return_row("R-2")["attempts"] == before["attempts"] and len(findings("R-2")) == 1


def test_a_tag_and_a_note_removed_by_hand_are_repaired_and_the_sync_converges(shop: ShopUnderTest):
    # An operator switches the shop to repair mode with the CLI
    assert operator_cli("drift-mode", shop.domain) == f"{shop.domain}: drift mode report"
    assert operator_cli("drift-mode", shop.domain, "repair") == f"{shop.domain}: drift mode repair"
    assert drifts.drift_mode(shop.row.id) is DriftMode.REPAIR
    gid, order_id = synced_exchange(shop, "#8003", "R-3", completed=True)
    assert return_row("R-3")["applied_state"] == "completed"
    # Given staff removed the refund-method tag and rewrote the note by hand
    by_hand(shop, TAGS_REMOVE, id=gid, tags=[EXCHANGE_TAG])
    by_hand(shop, SET_NOTE, input={"id": gid, "note": "Klant belde"})
    shopify_before = shopify_holds(shop)

    # When the drift check runs in repair mode
    assert check_drift()["repaired"] == 2

    # Then both are recorded as repaired, and the return is handed back to the sync
    marker = "[Return R-3] exchange: ..."
    assert sorted(findings("R-3")) == [
        ("exchange_note", marker, "absent", "repaired", True),
        ("refund_tag", EXCHANGE_TAG, "(no tags)", "repaired", True),
    ]
    row = return_row("R-3")
    assert row["sync"] == "pending" and row["detail"].startswith("re-applying after a drift on Shopify")
    assert set(event_statuses(order_id).values()) == {"accepted"}
    assert shopify_holds(shop) == shopify_before  # the check itself only reads
    assert order_id in [u.order_id for u in outbox.unrung()]  # the relay rings it

    # When the run the relay rings has applied it
    assert apply_order(order_id).outcome == "applied"

    # Then Shopify is in line again: the tag back, the note appended again, the return still closed
    order = shop.shopify_order(gid)
    assert EXCHANGE_TAG in order["tags"]
    assert order["note"] == "Klant belde\n[Return R-3] exchange: Maat M graag"
    assert [r["status"] for r in shop.shopify_returns()] == ["CLOSED"]
    row = return_row("R-3")
    assert (row["sync"], row["applied_state"], row["note_appended"]) == ("synced", "completed", True)
    assert set(event_statuses(order_id).values()) == {"applied", "superseded"}
    # And the next check finds nothing and resolves both findings
    assert check_drift() == {"checked": 1, "found": 0, "repaired": 0, "left": 0, "busy": 0}
    assert [open_ for *_, open_ in findings("R-3")] == [False, False]


def test_a_tag_removed_by_hand_is_only_reported_in_report_mode_and_resolved_once_back(shop: ShopUnderTest):
    gid, order_id = synced_exchange(shop, "#8004", "R-4")
    by_hand(shop, TAGS_REMOVE, id=gid, tags=[EXCHANGE_TAG])
    assert check_drift()["found"] == 1
    assert findings("R-4") == [("refund_tag", EXCHANGE_TAG, "(no tags)", "reported", True)]
    assert return_row("R-4")["sync"] == "synced"
    assert set(event_statuses(order_id).values()) == {"applied"}
    assert EXCHANGE_TAG not in shop.shopify_order(gid)["tags"]
    # The error inbox shows it as the return's drift problem
    [problem] = problems.listing(shop.domain)
    assert (problem.return_id, problem.category) == ("R-4", Category.DRIFT)
    assert "refund_tag: Shopify shows (no tags)" in problem.reason
    # When staff put it back, the next check resolves the finding, and the inbox empties
    by_hand(shop, TAGS_ADD, id=gid, tags=[EXCHANGE_TAG])
    recheck_now()
    assert check_drift()["found"] == 0
    assert findings("R-4") == [("refund_tag", EXCHANGE_TAG, "(no tags)", "reported", False)]
    assert drifts.open_drifts(shop.row.id) == []
    assert problems.listing(shop.domain) == []


def test_a_closed_return_reopened_by_hand_is_closed_again_in_repair_mode(shop: ShopUnderTest):
    drifts.set_drift_mode(shop.row.id, DriftMode.REPAIR)
    _, order_id = synced_exchange(shop, "#8005", "R-5", completed=True)
    by_hand(shop, REOPEN, id=return_row("R-5")["shopify_return_gid"])
    assert [r["status"] for r in shop.shopify_returns()] == ["OPEN"]

    assert check_drift()["repaired"] == 1
    assert findings("R-5") == [("return_status", "completed", "OPEN", "repaired", True)]
    assert apply_order(order_id).outcome == "applied"

    assert [r["status"] for r in shop.shopify_returns()] == ["CLOSED"]
    assert return_row("R-5")["sync"] == "synced"
    assert check_drift()["found"] == 0
    assert findings("R-5")[0][-1] is False


def test_a_mapped_return_shopify_does_not_know_is_found_again_without_a_second_create(shop: ShopUnderTest):
    drifts.set_drift_mode(shop.row.id, DriftMode.REPAIR)
    _, order_id = synced_exchange(shop, "#8006", "R-6")
    real = return_row("R-6")["shopify_return_gid"]
    # Given our mapping names a return Shopify does not have
    with transaction() as cur:
        cur.execute("UPDATE returns SET shopify_return_gid = 'gid://shopify/Return/999999999'")

    assert check_drift()["repaired"] == 1
    assert findings("R-6") == [
        ("return_missing", "gid://shopify/Return/999999999", "missing", "repaired", True)
    ]
    assert return_row("R-6")["shopify_return_gid"] is None

    # The run adopts the Shopify return with the same lines instead of creating another
    assert apply_order(order_id).outcome == "applied"
    assert [r["id"] for r in shop.shopify_returns()] == [real]
    assert return_row("R-6")["shopify_return_gid"] == real
    assert check_drift()["found"] == 0


def test_the_check_is_bounded_and_leaves_a_locked_order_for_the_next_run(shop: ShopUnderTest, monkeypatch):
    from config import get_settings
    from workers.locking import order_key, try_lock_order

    first_gid, first = synced_exchange(shop, "#8007", "R-7")
    synced_exchange(shop, "#8008", "R-8")
    monkeypatch.setenv("DRIFT_BATCH", "1")
    get_settings.cache_clear()
    try:
        held = try_lock_order(order_key(shop.domain, first_gid, first), first)
        assert held is not None
        with held:
            assert check_drift() == {"checked": 0, "found": 0, "repaired": 0, "left": 0, "busy": 1}
        assert check_drift()["checked"] == 1
        assert check_drift()["checked"] == 1
        assert check_drift()["checked"] == 0  # both compared; each again after a change or an hour
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("mode", list(DriftMode))
def test_the_drift_mode_is_a_column_of_the_shop(shop: ShopUnderTest, mode: DriftMode):
    assert drifts.drift_mode(shop.row.id) is DriftMode.REPORT
    drifts.set_drift_mode(shop.row.id, mode)
    assert drifts.drift_mode(shop.row.id) is mode
