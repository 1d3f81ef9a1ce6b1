"""The series of workers/metrics.py in multiprocess mode: each process writes its own files, a
scrape adds them up, the functions never raise, and the backlog comes from Postgres."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from tests.observability.conftest import (
    child_env,
    hold_return,
    run_python,
    scrape_dir,
    unique_shop,
    value,
)

COUNT_ONCE = """
from datetime import UTC, datetime, timedelta
from workers import metrics
metrics.event_accepted("acme.myshopify.com", "return.created")
metrics.event_finished("acme.myshopify.com", "return.created", "applied",
                       datetime.now(UTC) - timedelta(seconds=2))
metrics.event_finished("acme.myshopify.com", "return.created", "failed", None)
metrics.event_finished("acme.myshopify.com", "return.created", "superseded", None)
metrics.shopify_call("acme.myshopify.com", "ReturnCreate", "ok", 0.2)
metrics.shopify_call("acme.myshopify.com", "ReturnCreate", "timeout", 20.5)
metrics.throttle_wait("acme.myshopify.com")
metrics.lock_busy()
metrics.token_refresh("acme.myshopify.com", "refreshed")
metrics.heartbeat("celery@a")
metrics.beat_ran("returns.sweep")
"""


def test_three_processes_add_up_in_one_scrape(tmp_path: Path):
    env = child_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    for _ in range(3):
        run_python(COUNT_ONCE, env)
    assert len(list(tmp_path.glob("counter_*.db"))) == 3  # one file per process

    samples = scrape_dir(tmp_path)
    shop = {"shop": "acme.myshopify.com"}
    created = {**shop, "type": "return.created"}
    assert value(samples, "returnsync_events_accepted_total", **created) == 3
    assert value(samples, "returnsync_events_applied_total", **created) == 3
    assert value(samples, "returnsync_events_failed_total", **created) == 3
    assert value(samples, "returnsync_accepted_to_applied_seconds_count", **shop) == 3
    # Accepted two seconds before it was applied: in the (1, 2.5] bucket, not below.
    assert value(samples, "returnsync_accepted_to_applied_seconds_bucket", **shop, le="1.0") == 0
    assert value(samples, "returnsync_accepted_to_applied_seconds_bucket", **shop, le="2.5") == 3
    call = {**shop, "operation": "ReturnCreate"}
    assert value(samples, "returnsync_shopify_calls_total", **call, outcome="ok") == 3
    assert value(samples, "returnsync_shopify_calls_total", **call, outcome="timeout") == 3
    assert value(samples, "returnsync_shopify_call_seconds_count", operation="ReturnCreate") == 6
    assert value(samples, "returnsync_shopify_call_seconds_bucket", operation="ReturnCreate", le="0.25") == 3
    assert value(samples, "returnsync_throttle_waits_total", **shop) == 3
    assert value(samples, "returnsync_lock_waits_total") == 3
    assert value(samples, "returnsync_token_refreshes_total", **shop, outcome="refreshed") == 3
    # Timestamps are the newest of any process, not a sum of them.
    heartbeat = value(samples, "returnsync_worker_heartbeat_timestamp_seconds", worker="celery@a")
    beat = value(samples, "returnsync_beat_last_run_timestamp_seconds", task="returns.sweep")
    assert heartbeat is not None and 1.7e9 < heartbeat < 1e10
    assert beat is not None and 1.7e9 < beat < 1e10


def test_a_dead_process_keeps_its_counts_and_last_heartbeat(tmp_path: Path):
    env = child_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    run_python(COUNT_ONCE, env)
    (pid,) = {int(p.stem.rsplit("_", 1)[1]) for p in tmp_path.glob("counter_*.db")}
    before = scrape_dir(tmp_path)
    run_python(f"from workers import metrics; metrics.process_dead({pid})", env)
    after = scrape_dir(tmp_path)
    for name, labels in [
        ("returnsync_events_accepted_total", {"shop": "acme.myshopify.com", "type": "return.created"}),
        ("returnsync_worker_heartbeat_timestamp_seconds", {"worker": "celery@a"}),
    ]:
        assert value(after, name, **labels) == value(before, name, **labels) is not None


def test_the_functions_never_raise_and_bound_their_labels(tmp_path: Path):
    env = child_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    run_python(
        """
from workers import metrics
metrics.event_accepted(None, "return.exploded")
metrics.event_finished("s", "return.created", "applied", "not a time")
metrics.event_finished("s", object(), "failed", float("nan"))
metrics.shopify_call("s", "ReturnCreate", "weird", "slow")
metrics.shopify_call("s", "Q", "ok", -1)
metrics.token_refresh("s", "exploded")
metrics.heartbeat(None)
metrics.beat_ran(None)
metrics.process_dead("not a pid")
print("still here")
""",
        env,
    )
    samples = scrape_dir(tmp_path)
    assert value(samples, "returnsync_events_accepted_total", shop="unknown", type="other") == 1
    assert value(samples, "returnsync_events_failed_total", shop="s", type="other") == 1
    assert value(samples, "returnsync_token_refreshes_total", shop="s", outcome="other") == 1
    # A negative duration counts as zero; a call whose duration is garbage is not half-counted.
    assert value(samples, "returnsync_shopify_call_seconds_bucket", operation="Q", le="0.01") == 1
    assert (
        value(samples, "returnsync_shopify_calls_total", shop="s", operation="ReturnCreate", outcome="other")
        is None
    )
    assert value(samples, "returnsync_events_applied_total", shop="s", type="return.created") is None


def test_the_metrics_directory_is_the_settings_own_even_after_an_early_import(tmp_path: Path):
    # The `celery` command imports prometheus-client (Flower's plugin) before it loads tasks.app,
    # with no PROMETHEUS_MULTIPROC_DIR set: the settings' default (a per-user temporary directory)
    # must still get the series.
    env = {k: v for k, v in child_env(TMPDIR=str(tmp_path)).items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    run_python(
        """
import prometheus_client.values as values
assert not getattr(values.ValueClass, "_multiprocess", False)
from workers import metrics
metrics.lock_busy()
""",
        env,
    )
    default = tmp_path / f"returnsync-metrics-{os.getuid()}"
    assert oct(default.stat().st_mode & 0o777) == "0o700"
    assert value(scrape_dir(default), "returnsync_lock_waits_total") == 1


def test_backlog_gauges_come_from_postgres(app_server, clean_db: str):
    pending, waiting, failed = unique_shop("pending"), unique_shop("waiting"), unique_shop("failed")
    hold_return(pending, sync="pending", accepted_ago=timedelta(minutes=30))
    hold_return(pending, sync="pending", accepted_ago=timedelta(minutes=1))
    # Explained: the merchant has not fulfilled the order.
    hold_return(
        waiting,
        sync="waiting",
        detail="order not fulfilled yet",
        accepted_ago=timedelta(hours=5),
        event_status="waiting",
    )
    # Not explained: waiting, but nothing says why.
    hold_return(waiting, sync="waiting", accepted_ago=timedelta(minutes=20), event_status="waiting")
    hold_return(
        failed,
        sync="failed",
        detail="gave up after 10 attempts",
        accepted_ago=timedelta(hours=2),
        event_status="failed",
    )
    # A synced return with an event accepted since is pending again.
    hold_return(failed, sync="synced", accepted_ago=timedelta(minutes=3))
    # Finished work is not backlog.
    hold_return(failed, sync="synced", accepted_ago=timedelta(days=3), event_status="applied")

    samples = app_server.scrape()
    assert value(samples, "returnsync_backlog_query_ok") == 1

    def backlog(shop: str) -> dict[str, float | None]:
        return {
            s: value(samples, "returnsync_backlog_returns", shop=shop, sync=s)
            for s in ("pending", "waiting", "failed")
        }

    def gauge(name: str, shop: str) -> float:
        found = value(samples, name, shop=shop)
        assert found is not None, (name, shop)
        return found

    assert backlog(pending) == {"pending": 2, "waiting": 0, "failed": 0}
    assert gauge("returnsync_unsynced_unexplained_returns", pending) == 2
    assert 29 * 60 < gauge("returnsync_oldest_unsynced_return_age_seconds", pending) < 31 * 60
    assert 29 * 60 < gauge("returnsync_oldest_unexplained_return_age_seconds", pending) < 31 * 60

    assert backlog(waiting) == {"pending": 0, "waiting": 2, "failed": 0}
    assert gauge("returnsync_unsynced_unexplained_returns", waiting) == 1
    assert 4.9 * 3600 < gauge("returnsync_oldest_unsynced_return_age_seconds", waiting) < 5.1 * 3600
    assert 19 * 60 < gauge("returnsync_oldest_unexplained_return_age_seconds", waiting) < 21 * 60

    assert backlog(failed) == {"pending": 1, "waiting": 0, "failed": 1}
    assert gauge("returnsync_unsynced_unexplained_returns", failed) == 2
    assert 1.9 * 3600 < gauge("returnsync_oldest_unexplained_return_age_seconds", failed) < 2.1 * 3600


def test_a_shop_with_nothing_open_reports_zeros(app_server, clean_db: str):
    idle = unique_shop("idle")
    hold_return(idle, sync="synced", accepted_ago=timedelta(hours=1), event_status="applied")
    samples = app_server.scrape()
    assert value(samples, "returnsync_unsynced_unexplained_returns", shop=idle) == 0
    assert value(samples, "returnsync_oldest_unsynced_return_age_seconds", shop=idle) == 0
    assert value(samples, "returnsync_backlog_returns", shop=idle, sync="pending") == 0


def test_the_beat_schedule_is_exported(app_server):
    samples = app_server.scrape()
    assert value(samples, "returnsync_beat_interval_seconds", task="returns.sweep") is not None
    assert value(samples, "returnsync_beat_interval_seconds", task="shopify.maintain") is not None
