"""The Prometheus series of the sync, in prometheus-client's multiprocess mode.

Each process (gunicorn's workers, Celery's prefork children, the beat) writes its own series to
files in ``PROMETHEUS_MULTIPROC_DIR`` (``config.prometheus``); GET /metrics of the web process
(``web.metrics``) adds them up with the backlog read from Postgres at scrape time. The product code
calls the plain functions below; each is cheap (a dict look-up and a write to a memory-mapped
file) and never raises: metrics are bookkeeping, and a failure to count must not fail the work.

Series (a contract: dashboards and config/alerts.yml use these names):

==============================================================  =========  ===========================
``returnsync_events_accepted_total{shop,type}``                 counter    ``event_accepted``
``returnsync_events_applied_total{shop,type}``                  counter    ``event_finished``
``returnsync_events_failed_total{shop,type}``                   counter    ``event_finished``
``returnsync_accepted_to_applied_seconds{shop}``                histogram  ``event_finished``
``returnsync_shopify_calls_total{shop,operation,outcome}``      counter    ``shopify_call``
``returnsync_shopify_call_seconds{operation}``                  histogram  ``shopify_call``
``returnsync_throttle_waits_total{shop}``                       counter    ``throttle_wait``
``returnsync_lock_waits_total``                                 counter    ``lock_busy``
``returnsync_token_refreshes_total{shop,outcome}``              counter    ``token_refresh``
``returnsync_worker_heartbeat_timestamp_seconds{worker}``       gauge max  ``heartbeat``
``returnsync_beat_last_run_timestamp_seconds{task}``            gauge max  ``beat_ran``
``returnsync_backlog_returns{shop,sync}``                       gauge      Postgres, at scrape
``returnsync_oldest_unsynced_return_age_seconds{shop}``         gauge      Postgres, at scrape
``returnsync_unsynced_unexplained_returns{shop}``               gauge      Postgres, at scrape
``returnsync_oldest_unexplained_return_age_seconds{shop}``      gauge      Postgres, at scrape
``returnsync_oldest_unprocessed_webhook_age_seconds{shop}``     gauge      Postgres, at scrape
``returnsync_webhook_deliveries_failed{shop}``                  gauge      Postgres, at scrape
``returnsync_backlog_query_ok``                                 gauge      1 if Postgres answered
``returnsync_beat_interval_seconds{task}``                      gauge      the beat schedule
==============================================================  =========  ===========================

The two timestamps are gauges in mode ``max``: the newest value of any process, including one that
has died since (a dead worker's last heartbeat is exactly what the *workers down* alert looks at).
Label values are bounded: unknown event types, statuses and outcomes become ``other``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import ParamSpec

from config.prometheus import prepare

# Before prometheus-client is imported here: it decides at import where values live.
prepare()

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram  # noqa: E402
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

from config import get_settings  # noqa: E402
from config.celery import celery_config  # noqa: E402
from workers.statuses import CallOutcome, EventStatus, EventType  # noqa: E402
from workers.store import backlog  # noqa: E402

log = logging.getLogger(__name__)

PREFIX = "returnsync_"
OTHER = "other"
TOKEN_OUTCOMES = frozenset({"refreshed", "refused", "unavailable"})
_EVENT_TYPES = frozenset(EventType)
_CALL_OUTCOMES = frozenset(CallOutcome)
_SYNC_STATES = ("pending", "waiting", "failed")

# From a run that finds its order free at once (tens of ms) to the policy's longest retries and
# the hour over which apply_max_attempts spread.
ACCEPTED_TO_APPLIED_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# Up to the read timeout (SHOPIFY_READ_TIMEOUT_S, 20 s) and a little beyond.
SHOPIFY_CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30)

# A web process' group commit (web/group_commit.py), up to INGEST_BATCH_MAX.
INGEST_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

# registry=None: the values are read from the files (build_registry), never from this process's
# default registry, which Flower's own /metrics would otherwise serve with this process's share.
EVENTS_ACCEPTED = Counter(
    "returnsync_events_accepted_total",
    "Return events stored by ingest (answered 202).",
    ["shop", "type"],
    registry=None,
)
EVENTS_APPLIED = Counter(
    "returnsync_events_applied_total", "Return events applied to Shopify.", ["shop", "type"], registry=None
)
EVENTS_FAILED = Counter(
    "returnsync_events_failed_total",
    "Return events dead-lettered as failed (out of attempts or unreadable).",
    ["shop", "type"],
    registry=None,
)
INGEST_BATCH_EVENTS = Histogram(
    "returnsync_ingest_batch_events",
    "Events ingest recorded in one statement and commit (group commit).",
    buckets=INGEST_BATCH_BUCKETS,
    registry=None,
)
ACCEPTED_TO_APPLIED = Histogram(
    "returnsync_accepted_to_applied_seconds",
    "From an event's acceptance by ingest to its application on Shopify.",
    ["shop"],
    buckets=ACCEPTED_TO_APPLIED_BUCKETS,
    registry=None,
)
SHOPIFY_CALLS = Counter(
    "returnsync_shopify_calls_total",
    "HTTP exchanges with the Shopify Admin API, by how they ended.",
    ["shop", "operation", "outcome"],
    registry=None,
)
SHOPIFY_CALL_SECONDS = Histogram(
    "returnsync_shopify_call_seconds",
    "Duration of one HTTP exchange with the Shopify Admin API.",
    ["operation"],
    buckets=SHOPIFY_CALL_BUCKETS,
    registry=None,
)
THROTTLE_WAITS = Counter(
    "returnsync_throttle_waits_total",
    "Waits for a shop's API budget (THROTTLED or 429).",
    ["shop"],
    registry=None,
)
LOCK_WAITS = Counter(
    "returnsync_lock_waits_total", "Runs that found their order locked by another worker.", registry=None
)
TOKEN_REFRESHES = Counter(
    "returnsync_token_refreshes_total",
    "Refreshes of a shop's access token: refreshed, refused (needs reinstall) or unavailable.",
    ["shop", "outcome"],
    registry=None,
)
WORKER_HEARTBEAT = Gauge(
    "returnsync_worker_heartbeat_timestamp_seconds",
    "Unix time of a Celery worker's last heartbeat.",
    ["worker"],
    multiprocess_mode="max",
    registry=None,
)
BEAT_LAST_RUN = Gauge(
    "returnsync_beat_last_run_timestamp_seconds",
    "Unix time at which a beat task last ran to completion (a run that raised does not count).",
    ["task"],
    multiprocess_mode="max",
    registry=None,
)

_P = ParamSpec("_P")
_complained: set[str] = set()


def _bookkeeping(fn: Callable[_P, None]) -> Callable[_P, None]:
    """Never raise; say once per function that counting failed."""

    @functools.wraps(fn)
    def safely(*args: _P.args, **kwargs: _P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            if fn.__name__ not in _complained:
                _complained.add(fn.__name__)
                log.warning("metrics: %s failed; its series are incomplete", fn.__name__, exc_info=True)

    return safely


def _label(value: object, allowed: frozenset[str]) -> str:
    text = str(value)
    return text if text in allowed else OTHER


def _shop(shop: object) -> str:
    return str(shop) if shop else "unknown"


def _age_s(accepted_at: datetime | float) -> float:
    if isinstance(accepted_at, datetime):
        moment = accepted_at if accepted_at.tzinfo else accepted_at.replace(tzinfo=UTC)
        accepted_at = moment.timestamp()
    return max(0.0, time.time() - float(accepted_at))


@_bookkeeping
def event_accepted(shop: str, event_type: str) -> None:
    """Ingest stored a new event (the 202 of a first delivery, not a duplicate)."""
    EVENTS_ACCEPTED.labels(_shop(shop), _label(event_type, _EVENT_TYPES)).inc()


@_bookkeeping
def ingest_batch(events: int) -> None:
    """Ingest wrote ``events`` events in one statement (concurrent requests grouped)."""
    INGEST_BATCH_EVENTS.observe(events)


@_bookkeeping
def event_finished(shop: str, event_type: str, status: str, accepted_at: datetime | float | None) -> None:
    """An event reached a final status; ``accepted_at`` is its ``received_at`` (a datetime, or
    Unix seconds). Applied ones are counted and timed, failed ones counted; the other final
    statuses (superseded, rejected, conflict) are answers, shown by the backlog, not counted."""
    labels = (_shop(shop), _label(event_type, _EVENT_TYPES))
    if status == EventStatus.APPLIED:
        # Computed first: an unreadable time must not leave the event counted but not timed.
        age_s = _age_s(accepted_at) if accepted_at is not None else None
        EVENTS_APPLIED.labels(*labels).inc()
        if age_s is not None:
            ACCEPTED_TO_APPLIED.labels(labels[0]).observe(age_s)
    elif status == EventStatus.FAILED:
        EVENTS_FAILED.labels(*labels).inc()


@_bookkeeping
def shopify_call(shop: str, operation: str, outcome: str, seconds: float) -> None:
    """One HTTP exchange with Shopify ended (``outcome``: a ``CallOutcome``)."""
    duration_s = max(0.0, float(seconds))  # first: a call is counted and timed, or neither
    SHOPIFY_CALLS.labels(_shop(shop), str(operation), _label(outcome, _CALL_OUTCOMES)).inc()
    SHOPIFY_CALL_SECONDS.labels(str(operation)).observe(duration_s)


@_bookkeeping
def throttle_wait(shop: str) -> None:
    """A call waited for the shop's API budget (or handed the wait back to the run)."""
    THROTTLE_WAITS.labels(_shop(shop)).inc()


@_bookkeeping
def lock_busy() -> None:
    """A run found its order locked by another worker and comes back later."""
    LOCK_WAITS.inc()


@_bookkeeping
def token_refresh(shop: str, outcome: str) -> None:
    """A token refresh ended: ``refreshed``, ``refused`` (parked: needs reinstall) or
    ``unavailable`` (no answer; retried)."""
    TOKEN_REFRESHES.labels(_shop(shop), _label(outcome, TOKEN_OUTCOMES)).inc()


@_bookkeeping
def heartbeat(worker: str) -> None:
    """A Celery worker is alive (its hostname, e.g. ``celery@host``)."""
    WORKER_HEARTBEAT.labels(str(worker)).set(time.time())


@_bookkeeping
def beat_ran(task: str) -> None:
    """A beat task ran to completion (its Celery name, e.g. ``returns.sweep``)."""
    BEAT_LAST_RUN.labels(str(task)).set(time.time())


@_bookkeeping
def process_dead(pid: int) -> None:
    """A process of ours exited: drop its files of live gauges (counters, histograms and the
    ``max`` timestamps stay: the sums must not go back, and a last heartbeat stays the last)."""
    mark_process_dead(pid, get_settings().prometheus_multiproc_dir)


class BacklogCollector(Collector):
    """The backlog gauges, read from Postgres at each scrape in one query."""

    def describe(self) -> Iterable[Metric]:
        # Registering must not query Postgres (the registry calls this instead of collect).
        return []

    def collect(self) -> Iterable[Metric]:
        ok = GaugeMetricFamily("returnsync_backlog_query_ok", "1 if the backlog query answered this scrape.")
        try:
            rows = backlog.by_shop()
        except Exception as exc:
            # Postgres away or the statement timed out: say so, and leave the gauges out rather
            # than report an empty backlog.
            log.warning("metrics: backlog query failed: %s", type(exc).__name__)
            ok.add_metric([], 0)
            return [ok]
        ok.add_metric([], 1)
        returns = GaugeMetricFamily(
            "returnsync_backlog_returns", "Returns not synced, by sync state.", labels=["shop", "sync"]
        )
        oldest = GaugeMetricFamily(
            "returnsync_oldest_unsynced_return_age_seconds",
            "How long the shop's longest-unsynced return has been waiting (0: none).",
            labels=["shop"],
        )
        unexplained = GaugeMetricFamily(
            "returnsync_unsynced_unexplained_returns",
            "Returns not synced without an explained wait: pending, failed, or waiting with no detail.",
            labels=["shop"],
        )
        oldest_unexplained = GaugeMetricFamily(
            "returnsync_oldest_unexplained_return_age_seconds",
            "How long the oldest of the unexplained unsynced returns has been unsynced (0: none).",
            labels=["shop"],
        )
        webhook_age = GaugeMetricFamily(
            "returnsync_oldest_unprocessed_webhook_age_seconds",
            "How long the oldest stored but unprocessed Shopify webhook has waited (0: none).",
            labels=["shop"],
        )
        webhooks_failed = GaugeMetricFamily(
            "returnsync_webhook_deliveries_failed",
            "Shopify webhook deliveries whose processing failed (kept for an operator).",
            labels=["shop"],
        )
        for row in rows:
            for sync, count in zip(_SYNC_STATES, (row.pending, row.waiting, row.failed), strict=True):
                returns.add_metric([row.shop, sync], count)
            oldest.add_metric([row.shop], row.oldest_age_s)
            unexplained.add_metric([row.shop], row.unexplained)
            oldest_unexplained.add_metric([row.shop], row.oldest_unexplained_age_s)
            webhook_age.add_metric([row.shop], row.oldest_webhook_age_s)
            webhooks_failed.add_metric([row.shop], row.webhooks_failed)
        return [ok, returns, oldest, unexplained, oldest_unexplained, webhook_age, webhooks_failed]


class ScheduleCollector(Collector):
    """The beat's schedule, so an alert can compare each task's last run with its own interval."""

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        interval = GaugeMetricFamily(
            "returnsync_beat_interval_seconds", "How often the beat runs this task.", labels=["task"]
        )
        for entry in celery_config(get_settings())["beat_schedule"].values():
            schedule = entry.get("schedule")
            if isinstance(schedule, int | float):
                interval.add_metric([str(entry["task"])], float(schedule))
        return [interval]


class OursCollector(Collector):
    """The files of every process of this machine, our series only: a library's own metrics made
    in one of our processes (Flower's, in the flower process) land in the same files."""

    def __init__(self, path: str) -> None:
        self.files = MultiProcessCollector(None, path=path)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        return [family for family in self.files.collect() if family.name.startswith(PREFIX)]


def build_registry() -> CollectorRegistry:
    """What GET /metrics serves: every process's files of this machine, the backlog and the
    beat's schedule. Built once; each collect reads afresh."""
    registry = CollectorRegistry()
    registry.register(OursCollector(get_settings().prometheus_multiproc_dir))
    registry.register(BacklogCollector())
    registry.register(ScheduleCollector())
    return registry
