"""Retention: old finished work is cut to what the status API needs; open work is never touched."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from config import get_settings
from tests.apply.conftest import ShopUnderTest, return_row
from web.app import create_app
from workers.apply import apply_order
from workers.events import load_event
from workers.reconcile import retention
from workers.store.db import transaction
from workers.store.inbox import record_event

ITEMS = {101: 1}
OLD = "now() - interval '100 days'"


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RETENTION_BATCH", "2")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _bodies(order_id: int) -> list[dict[str, Any]]:
    with transaction() as cur:
        cur.execute(
            "SELECT event_id, status, payload, redacted_at FROM events WHERE order_id = %s ORDER BY id",
            (order_id,),
        )
        return [dict(row) for row in cur.fetchall()]


def _count(table: str, order_id: int) -> int:
    with transaction() as cur:
        cur.execute(f"SELECT count(*) AS n FROM {table} WHERE order_id = %s", (order_id,))
        row = cur.fetchone()
    assert row is not None
    return int(row["n"])


def _age_everything(order_id: int) -> None:
    """Make the order's log and finished events look 100 days old."""
    with transaction() as cur:
        cur.execute(
            f"UPDATE events SET finished_at = {OLD} WHERE order_id = %s AND finished_at IS NOT NULL",
            (order_id,),
        )
        cur.execute(f"UPDATE shopify_calls SET at = {OLD} WHERE order_id = %s", (order_id,))
        cur.execute(f"UPDATE attempts SET started_at = {OLD} WHERE order_id = %s", (order_id,))


def _status(shop: ShopUnderTest, return_id: str) -> dict[str, Any]:
    client = create_app().test_client()
    response = client.get(
        f"/v1/returns/{shop.domain}/{return_id}",
        headers={"Authorization": f"Bearer {get_settings().status_api_token}"},
    )
    assert response.status_code == 200, response.data
    body: dict[str, Any] = response.get_json()
    return body


def test_old_finished_work_is_cut_and_open_work_kept(shop: ShopUnderTest, no_beat_runs: None):
    # Given a return synced 100 days ago, with a personal reason text and tracking in its body
    done_gid = shop.order("#9001", ITEMS)
    done = shop.event(
        "created",
        "R-1",
        order_gid=done_gid,
        items=ITEMS,
        tracking="TRACK1",
        reason="Te klein",
        event_id="old-1",
    )
    assert apply_order(done).outcome == "applied"
    status_before = _status(shop, "R-1")
    # ...and a return still waiting for its order to be fulfilled, its log just as old
    waiting = shop.event("created", "R-2", order_gid=shop.order("#9002", ITEMS, fulfilled=False), items=ITEMS)
    assert apply_order(waiting).outcome == "waiting"
    _age_everything(done)
    _age_everything(waiting)
    # ...and a recent call of the synced order, an old beat run and an old resolved and open drift
    with transaction() as cur:
        cur.execute(
            "INSERT INTO shopify_calls (shop_id, order_id, operation, outcome, duration_ms)"
            " VALUES (%s, %s, 'LiveOrder', 'ok', 1)",
            (shop.row.id, done),
        )
        cur.execute(
            "INSERT INTO beat_runs (task, started_at)"
            f" VALUES ('returns.sweep', {OLD}), ('returns.sweep', now())"
        )
        for resolved in (OLD, "NULL"):
            cur.execute(
                "INSERT INTO drifts (shop_id, order_id, return_id, kind, expected, actual, action,"
                " found_at, resolved_at)"
                f" SELECT shop_id, order_id, id, 'refund_tag', 'a', 'b', 'reported', {OLD}, {resolved}"
                " FROM returns WHERE platform_return_id = 'R-1'"
            )
    calls_of_waiting, attempts_of_waiting = _count("shopify_calls", waiting), _count("attempts", waiting)
    waiting_bodies = _bodies(waiting)

    # When the retention task runs
    from tasks.reconcile import retention_prune

    done_counts = retention_prune.run()

    # Then the synced return's body is cut to the minimum, its row and status kept
    (body,) = _bodies(done)
    assert body["status"] == "applied" and body["redacted_at"] is not None
    item = body["payload"]["return"]["items"][0]
    assert item == {"line_item_id": "101", "quantity": 1, "reason_id": 23}
    assert "tracking" not in body["payload"]["return"]
    assert body["payload"]["return"]["refund_method"] == "refund"
    assert _status(shop, "R-1") == status_before
    # ...its old call log and finished attempts gone, the recent call kept
    assert _count("shopify_calls", done) == 1 and _count("attempts", done) == 0
    # ...the waiting order untouched: its event body, its log, its attempts
    assert _bodies(waiting) == waiting_bodies
    assert (_count("shopify_calls", waiting), _count("attempts", waiting)) == (
        calls_of_waiting,
        attempts_of_waiting,
    )
    assert return_row("R-2")["sync"] == "waiting"
    # ...the old beat run and the old resolved finding gone, the open one kept
    with transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM beat_runs WHERE task = 'returns.sweep'")
        assert cur.fetchone()["n"] == 1
        cur.execute("SELECT resolved_at FROM drifts")
        assert [row["resolved_at"] for row in cur.fetchall()] == [None]
    assert done_counts["event_bodies"] == 1 and done_counts["drifts"] == 1
    # And the producer's re-delivery of the pruned event is still a duplicate, not a 409
    original = {
        "id": "old-1",
        "type": "return.created",
        "occurred_at": "2026-11-29T10:00:00+00:00",
        "shop": shop.domain,
        "return": {
            "id": "R-1",
            "order": {"id": done_gid},
            "origin": "return_portal",
            "items": [{"line_item_id": "101", "quantity": 1, "reason_id": 23, "reason": "Te klein"}],
            "refund_method": "refund",
            "tracking": {"number": "TRACK1", "url": "https://track.example/TRACK1"},
        },
    }
    assert record_event(load_event(original), original).status == "duplicate"
    # And a second run has nothing left to do
    assert set(retention.prune().values()) == {0}


def test_failed_and_recent_work_keeps_its_body(shop: ShopUnderTest):
    gid = shop.order("#9003", ITEMS)
    failed = shop.event("created", "R-3", order_gid=gid, items=ITEMS, event_id="f-3")
    recent = shop.event("created", "R-4", order_gid=shop.order("#9004", ITEMS), items=ITEMS)
    assert apply_order(recent).outcome == "applied"
    with transaction() as cur:
        cur.execute(f"UPDATE events SET status = 'failed', finished_at = {OLD} WHERE event_id = 'f-3'")
        cur.execute("UPDATE returns SET sync = 'failed', detail = 'gave up' WHERE platform_return_id = 'R-3'")
    assert retention.prune()["event_bodies"] == 0
    assert [b["redacted_at"] for b in _bodies(failed) + _bodies(recent)] == [None, None]


def test_each_run_is_bounded_and_the_next_continues(shop: ShopUnderTest, small_batches: None):
    order_id = shop.event("created", "R-5", order_gid=shop.order("#9005", ITEMS), items=ITEMS)
    assert apply_order(order_id).outcome == "applied"
    with transaction() as cur:
        for _ in range(3):
            cur.execute(
                "INSERT INTO shopify_calls (shop_id, order_id, operation, outcome, duration_ms, at)"
                f" VALUES (%s, %s, 'LiveOrder', 'ok', 1, {OLD})",
                (shop.row.id, order_id),
            )
    _age_everything(order_id)
    total = _count("shopify_calls", order_id)
    done: list[int] = []
    while len(done) < 20 and (not done or done[-1]):
        done.append(retention.prune()["shopify_calls"])
    # RETENTION_BATCH at a time, the last run finding nothing left
    assert done[-1] == 0 and sum(done) == total > 2
    assert all(n == 2 for n in done[:-2]) and 1 <= done[-2] <= 2, done
    assert _count("shopify_calls", order_id) == 0
