"""Fixtures for the apply tests: the Shopify stand-in over HTTP, a registered shop, events in
Postgres as ingest writes them, and real Celery worker processes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from standin.admin import StandinAdmin
from standin.server import RunningStandin
from workers.events import load_event
from workers.shopify import api as api_module
from workers.store.db import transaction
from workers.store.inbox import record_event
from workers.store.shops import Shop, register_shop

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
_event_ids = itertools.count(1)


@pytest.fixture
def admin(standin: RunningStandin) -> StandinAdmin:
    return StandinAdmin(standin.url)


@dataclass
class ShopUnderTest:
    """A shop on the stand-in and registered with the sync; helpers to seed orders and events."""

    domain: str
    token: str
    admin: StandinAdmin
    row: Shop

    def order(self, name: str, quantities: dict[int, int], *, fulfilled: bool = True) -> str:
        """Create an order on Shopify; returns its GID. ``quantities``: line item id -> quantity."""
        created = self.admin.create_order(
            self.domain,
            name,
            [{"id": li, "quantity": qty, "title": f"Item {li}"} for li, qty in quantities.items()],
            fulfilled=fulfilled,
        )
        return created["id"]

    def event(
        self,
        event_type: str,
        return_id: str,
        *,
        order_gid: str | None = None,
        order_name: str | None = None,
        items: dict[int, int] | None = None,
        minutes: int = 0,
        refund_method: str | None = "refund",
        tracking: str | None = None,
        exchange_note: str | None = None,
        event_id: str | None = None,
        reason_id: int = 23,
        reason: str | None = "Het staat me niet",
        customer_note: str | None = None,
    ) -> int:
        """Record an event as ingest does; returns the order row id."""
        order: dict[str, Any] = {}
        if order_gid:
            order["id"] = order_gid
        if order_name:
            order["name"] = order_name
        body: dict[str, Any] = {
            "id": event_id or f"evt_{next(_event_ids)}_{uuid.uuid4().hex[:6]}",
            "type": f"return.{event_type}",
            "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
            "shop": self.domain,
            "return": {
                "id": return_id,
                "order": order,
                "origin": "return_portal",
                "items": [
                    {
                        "line_item_id": str(li),
                        "quantity": qty,
                        "reason_id": reason_id,
                        **({"reason": reason} if reason is not None else {}),
                        **({"customer_note": customer_note} if customer_note is not None else {}),
                    }
                    for li, qty in (items or {}).items()
                ],
            },
        }
        if refund_method:
            body["return"]["refund_method"] = refund_method
        if tracking:
            body["return"]["tracking"] = {"number": tracking, "url": f"https://track.example/{tracking}"}
        if exchange_note:
            body["return"]["exchange_note"] = exchange_note
        result = record_event(load_event(body), body)
        assert result.status == "accepted", result
        assert result.order_id is not None
        return result.order_id

    def state(self) -> dict[str, Any]:
        return self.admin.state(self.domain)

    def shopify_returns(self) -> list[dict[str, Any]]:
        return self.state()["returns"]

    def shopify_order(self, gid: str) -> dict[str, Any]:
        return next(o for o in self.state()["orders"] if o["id"] == gid)


@pytest.fixture
def shop(clean_db: str, standin: RunningStandin, admin: StandinAdmin) -> ShopUnderTest:
    """A fresh shop per test (a unique domain, so stand-in state never leaks between tests)."""
    api_module.clear_reason_cache()
    domain = f"shop-{uuid.uuid4().hex[:10]}.myshopify.com"
    token = f"shpat_{uuid.uuid4().hex}"
    admin.create_shop(domain, token)
    row = register_shop(domain, token, api_url=standin.url + "/shops/{shop}/admin/api/{version}/graphql.json")
    return ShopUnderTest(domain, token, admin, row)


def event_statuses(order_id: int) -> dict[str, str]:
    with transaction() as cur:
        cur.execute("SELECT event_id, status FROM events WHERE order_id = %s", (order_id,))
        return {row["event_id"]: row["status"] for row in cur.fetchall()}


def return_row(platform_return_id: str) -> dict[str, Any]:
    with transaction() as cur:
        cur.execute("SELECT * FROM returns WHERE platform_return_id = %s", (platform_return_id,))
        row = cur.fetchone()
    assert row is not None
    return dict(row)


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll with a bounded deadline (a bound on waiting, not a speed assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval_s)
    return check()


def _spawn(argv: list[str], prefix: str) -> tuple[subprocess.Popen[bytes], Any]:
    # A log file, not a pipe: a pipe nobody reads would fill up and stall the process.
    log = tempfile.NamedTemporaryFile(prefix=prefix, suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        argv, cwd=ROOT, env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    process.log_path = log.name  # type: ignore[attr-defined]
    return process, log


def _stop(process: subprocess.Popen[bytes], log: Any) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    log.close()
    os.unlink(log.name)


@contextmanager
def worker_processes(concurrency: int, processes: int = 1) -> Iterator[subprocess.Popen[bytes]]:
    """``processes`` real Celery workers (the gevent pool, as the Procfile runs it: ``concurrency``
    runs at once in each), each a node of its own, consuming the returns queue; and beside them
    the relay, as in the Procfile: the relay hands out runs that come due later (an order handed
    back while its shop's budget refills, a busy order), so without it such a run would wait for
    the sweep. Yields the first worker."""
    celery = str(Path(sys.executable).with_name("celery"))
    workers = [
        _spawn(
            [
                celery,
                "-A",
                "tasks.app",
                "worker",
                "-P",
                "gevent",
                "--concurrency",
                str(concurrency),
                "-l",
                "info",
                "-Q",
                "returns",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"test-{uuid.uuid4().hex[:6]}@%h",
            ],
            "celery-worker-",
        )
        for _ in range(processes)
    ]
    relay, relay_log = _spawn([sys.executable, "-m", "workers.relay"], "relay-")
    try:
        yield workers[0][0]
    finally:
        _stop(relay, relay_log)
        for worker, log in workers:
            _stop(worker, log)


@pytest.fixture
def celery_workers(database: str, redis_client: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker running up to eight orders at once, stopped after the test."""
    with worker_processes(8) as process:
        yield process
