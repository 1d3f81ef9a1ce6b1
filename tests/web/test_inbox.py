"""The inbox in Postgres: one order row per Shopify order, returns never move, races are safe."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from flask.testing import FlaskClient

from tests.web.conftest import example, mutated, post_signed
from workers.events import load_event
from workers.store import inbox, outbox, shops
from workers.store.db import transaction


def rows(sql: str) -> list[dict]:
    with transaction() as cur:
        cur.execute(sql)
        return cur.fetchall()


def record(body: dict) -> inbox.RecordResult:
    return inbox.record_event(load_event(body), body)


def test_given_a_name_only_event_then_a_later_gid_event_of_that_order_joins_the_same_order(
    shop: shops.Shop,
) -> None:
    by_name = example("04")  # order {"name": "#1107"}
    with_gid = mutated(
        example("01"),
        lambda b: b["return"].update(id="R-2", order={"id": "gid://shopify/Order/777", "name": "#1107"}),
    )
    first, second = record(by_name), record(with_gid)
    assert first.order_id == second.order_id
    assert rows("SELECT order_ref, order_gid, order_name FROM orders") == [
        {"order_ref": "#1107", "order_gid": "gid://shopify/Order/777", "order_name": "#1107"}
    ]


def test_given_an_existing_return_when_an_event_names_another_order_then_the_return_keeps_its_order(
    shop: shops.Shop,
) -> None:
    first = record(example("01"))
    moved = mutated(example("02"), lambda b: b["return"].update(order={"id": "gid://shopify/Order/999"}))
    second = record(moved)
    assert second.status == "accepted"
    assert second.order_id == first.order_id
    assert rows("SELECT count(*) AS n FROM orders") == [{"n": 1}]
    assert {r["order_id"] for r in rows("SELECT order_id FROM events")} == {first.order_id}


def test_given_an_accepted_event_then_record_result_carries_the_rows_to_enqueue(shop: shops.Shop) -> None:
    result = record(example("01"))
    (event_row,) = rows("SELECT id, order_id, status, enqueued_at FROM events")
    assert (result.status, result.order_id, result.event_row_id) == (
        "accepted",
        event_row["order_id"],
        event_row["id"],
    )
    assert event_row["enqueued_at"] is None
    # It is an unrung outbox entry: the relay finds it, rings the order and marks it.
    assert [(u.order_id, u.shop_id, u.event_ids) for u in outbox.unrung()] == [
        (result.order_id, shop.id, (result.event_row_id,))
    ]
    outbox.mark_rung([event_row["id"]])
    assert rows("SELECT enqueued_at IS NOT NULL AS rung FROM events") == [{"rung": True}]
    assert outbox.unrung() == []


def _event_of(base: str, event_id: str, return_id: str, order_gid: str) -> dict:
    def change(body: dict) -> None:
        body["id"] = event_id
        body["return"].update(id=return_id, order={"id": order_gid})

    return mutated(example(base), change)


def test_given_more_unrung_orders_than_a_round_takes_then_the_oldest_go_first_and_the_rest_next_round(
    shop: shops.Shop,
) -> None:
    # Three orders, the first with two events; a round of two orders
    first, second, third = (
        record(_event_of("01", f"evt_r{n}", f"R-{n}", f"gid://shopify/Order/{n}")) for n in (1, 2, 3)
    )
    later = record(_event_of("02", "evt_r1b", "R-1", "gid://shopify/Order/1"))
    first_round = outbox.unrung(limit=2)
    assert [(u.order_id, u.event_ids) for u in first_round] == [
        (first.order_id, (first.event_row_id, later.event_row_id)),
        (second.order_id, (second.event_row_id,)),
    ]
    outbox.mark_rung([e for u in first_round for e in u.event_ids])
    assert [(u.order_id, u.event_ids) for u in outbox.unrung(limit=2)] == [
        (third.order_id, (third.event_row_id,))
    ]


def test_given_a_retried_delivery_of_an_open_event_then_its_doorbell_is_rung_again(shop: shops.Shop) -> None:
    first = record(example("01"))
    outbox.mark_rung([first.event_row_id])
    # The producer retries (its first answer was lost, or the doorbell may have been lost)
    again = record(example("01"))
    assert again.status == "duplicate"
    assert [(u.order_id, u.shop_id, u.event_ids) for u in outbox.unrung()] == [
        (first.order_id, shop.id, (first.event_row_id,))
    ]
    # A finished event stays finished: no doorbell for it
    outbox.mark_rung([first.event_row_id])
    with transaction() as cur:
        cur.execute("UPDATE events SET status = 'applied'")
    record(example("01"))
    assert outbox.unrung() == []


def test_given_finished_events_then_mark_enqueued_leaves_them_alone(shop: shops.Shop) -> None:
    result = record(example("01"))
    with transaction() as cur:
        cur.execute("UPDATE events SET status = 'applied'")
    outbox.mark_enqueued(result.order_id)
    assert rows("SELECT enqueued_at FROM events") == [{"enqueued_at": None}]


def test_given_many_simultaneous_deliveries_of_one_event_then_exactly_one_202(
    client: FlaskClient, shop: shops.Shop
) -> None:
    body = example("02")
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda _: post_signed(client, body).status_code, range(16)))
    assert sorted(codes) == [200] * 15 + [202]
    assert rows("SELECT count(*) AS n FROM events") == [{"n": 1}]
    assert rows("SELECT count(*) AS n FROM returns") == [{"n": 1}]


def test_given_first_events_of_one_return_at_once_then_one_return_and_one_order(
    client: FlaskClient, shop: shops.Shop
) -> None:
    bodies = [mutated(example("02"), lambda b, i=i: b.update(id=f"evt_race_{i}")) for i in range(12)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda b: post_signed(client, b).status_code, bodies))
    assert codes == [202] * 12
    assert rows("SELECT count(*) AS n FROM returns") == [{"n": 1}]
    assert rows("SELECT count(*) AS n FROM orders") == [{"n": 1}]


def test_given_postgres_dropped_our_connections_then_the_producer_still_lands_the_event_once(
    client: FlaskClient, shop: shops.Shop
) -> None:
    """What a Postgres restart does to the pool: every idle connection is dead."""
    assert post_signed(client, example("01")).status_code == 202
    with transaction() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    codes = []
    for _ in range(5):  # the producer retries on 503
        codes.append(post_signed(client, example("02")).status_code)
        if codes[-1] != 503:
            break
    assert codes[-1] == 202
    assert set(codes[:-1]) <= {503}
    assert rows("SELECT count(*) AS n FROM events") == [{"n": 2}]


def test_given_one_batch_of_mixed_deliveries_then_each_gets_the_answer_it_would_get_alone(
    shop: shops.Shop,
) -> None:
    """Group commit's statement (record_events): one commit, each event decided as record_event
    decides it, in the caller's order, a repeat inside the batch included."""
    earlier = record(example("01"))
    changed = mutated(example("01"), lambda b: b.update(occurred_at="2026-03-02T10:00:00Z"))
    new_a = _event_of("02", "evt_batch_a", "R-batch-1", "gid://shopify/Order/5001")
    new_b = _event_of("02", "evt_batch_b", "R-batch-2", "gid://shopify/Order/5001")
    stranger = mutated(example("02"), lambda b: b.update(id="evt_batch_c", shop="nobody.myshopify.com"))
    batch = [new_b, example("01"), changed, stranger, new_a, new_b]

    results = inbox.record_events([(load_event(body), body) for body in batch])

    assert [r.status for r in results] == [
        "accepted",
        "duplicate",
        "conflict",
        "unknown_shop",
        "accepted",
        "duplicate",  # the batch's own earlier copy
    ]
    assert results[1].event_row_id == earlier.event_row_id
    assert results[0].order_id == results[4].order_id != earlier.order_id  # one new order row
    assert results[5].event_row_id == results[0].event_row_id
    stored = sorted(r["event_id"] for r in rows("SELECT event_id FROM events"))
    assert stored == sorted([example("01")["id"], "evt_batch_a", "evt_batch_b"])
    assert rows("SELECT count(*) AS n FROM orders WHERE order_gid = 'gid://shopify/Order/5001'") == [{"n": 1}]
