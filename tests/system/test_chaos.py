"""A small chaos run: duplicates, reordering and late events, a worker kill -9, a Redis flush, a
Postgres restart, a faulty, throttling Shopify, expiring tokens and an uninstall then reinstall of
a shop. Nothing may be lost, duplicated or wrong."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.chaos import ChaosParams, run
from workers.store import db

pytestmark = pytest.mark.usefixtures("system_ready")


@pytest.fixture(autouse=True)
def _fresh_pool_after_postgres_restart() -> Iterator[None]:
    yield
    # The run restarts Postgres: connections this test process pooled earlier (other tests'
    # fixtures) are dead now, and the next test to borrow one would fail for our doing.
    db.close_pool()


def test_small_chaos_run_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    params = ChaosParams(
        events=300,
        orders=40,
        shops=3,
        seed=11,
        duration=20.0,
        workers=4,  # four named worker nodes, through PgBouncer in transaction pooling
        concurrency=8,
        pgbouncer=True,
        kill_every=30.0,  # one kill, at 15 s; the Redis flush is at 8 s, the restart at 12 s
        token_ttl_s=6.0,  # the app's tokens expire every 6 s: refreshed over and over
        # (the uninstall of one shop is at 6 s, its reinstall at 9 s)
        bucket_size=600,
        restore_rate=150,
        converge_timeout=120.0,
        name="chaos_test",
        out=str(tmp_path / "chaos.json"),
    )
    report = run(params)
    where = f"report with evidence: {params.out}"

    kinds = [fault["kind"] for fault in report["faults"] if "error" not in fault]
    assert sorted(kinds) == ["flush_redis", "kill_worker", "reinstall", "restart_postgres", "uninstall"], (
        report["faults"]
    )
    assert report["standin_faults"] > 0, "the stand-in injected no fault: the run proves little"
    assert report["events_refused"] == {}
    assert report["lost_events"] == 0, report["lost_event_ids"]
    assert report["duplicate_returns"] == 0, (report["differences"], where)
    assert report["orders_wrong"] == 0, (report["differences"], where)
    assert report["returns_not_synced"] == 0, (report["status_problems"], where)
    assert report["converged"]
    # The processes really reached Postgres through PgBouncer (its own count of transactions).
    assert report["pgbouncer_transactions"] > 1000
