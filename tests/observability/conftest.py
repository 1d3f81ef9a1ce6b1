"""Helpers of the observability tests: processes that write metrics into a directory of their own,
a scrape of such a directory or of a real app's GET /metrics, and returns held unsynced in
Postgres as the sync leaves them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server

from config.settings import LOCAL_METRICS_AUTH
from tests.apply.conftest import wait_until  # noqa: F401 - the suite's one bounded wait, re-exported
from workers.store.db import transaction

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
METRICS_AUTH = tuple(LOCAL_METRICS_AUTH.split(":", 1))

# (name, labels as a sorted tuple) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape_dir(path: Path) -> Samples:
    """What GET /metrics would serve from these files (our series only)."""
    from prometheus_client import CollectorRegistry

    from workers.metrics import OursCollector

    registry = CollectorRegistry()
    registry.register(OursCollector(str(path)))
    return parse(generate_latest(registry).decode())


def child_env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def probe_worker_argv(queue: str, hostname: str, *options: str) -> list[str]:
    """A Celery worker of ours serving only the probe tasks (``probe_tasks``), on a queue of its own."""
    worker = [str(BIN / "celery"), "-A", "tasks.app", "worker", "-I", "tests.observability.probe_tasks"]
    return [*worker, "-Q", queue, *options, "-n", hostname]


def run_python(code: str, env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter running ``code`` in the repository (as a process of ours would)."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@dataclass
class RunningApp:
    url: str

    def scrape(self) -> Samples:
        response = requests.get(self.url + "/metrics", auth=METRICS_AUTH, timeout=30)
        assert response.status_code == 200, response.text
        return parse(response.text)


@pytest.fixture
def app_server(database: str) -> Iterator[RunningApp]:
    """Our web app on a real port (werkzeug in a thread), as Prometheus would scrape it."""
    from web.app import create_app

    server = make_server("127.0.0.1", 0, create_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield RunningApp(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(timeout=10)


def unique_shop(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}.myshopify.com"


def hold_return(
    shop: str,
    *,
    sync: str,
    detail: str | None = None,
    accepted_ago: timedelta,
    event_status: str = "accepted",
) -> int:
    """A shop, an order and a return in ``sync`` whose one event was accepted ``accepted_ago``:
    a return held unsynced, as the rows stand when no worker has applied it. Returns its row id."""
    received = at = datetime.now(UTC) - accepted_ago
    with transaction() as cur:
        cur.execute(
            "INSERT INTO shops (domain) VALUES (%s)"
            " ON CONFLICT (domain) DO UPDATE SET domain = EXCLUDED.domain RETURNING id",
            (shop,),
        )
        shop_id = cur.fetchone()["id"]
        cur.execute(
            "INSERT INTO orders (shop_id, order_ref, order_name) VALUES (%s, %s, %s) RETURNING id",
            (shop_id, f"#{uuid.uuid4().hex[:6]}", "#1106"),
        )
        order_id = cur.fetchone()["id"]
        cur.execute(
            "INSERT INTO returns (shop_id, platform_return_id, order_id, sync, detail, created_at,"
            " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (shop_id, f"R-{uuid.uuid4().hex[:8]}", order_id, sync, detail, received, received),
        )
        return_id = cur.fetchone()["id"]
        cur.execute(
            "INSERT INTO events (event_id, shop_id, return_id, order_id, type, occurred_at, payload, status,"
            " received_at, enqueued_at) VALUES (%s, %s, %s, %s, 'return.created', %s, '{}', %s, %s, %s)",
            # enqueued_at: rung already, so no relay of the session rings it to a worker.
            (f"evt_{uuid.uuid4().hex}", shop_id, return_id, order_id, at, event_status, at, at),
        )
    return int(return_id)
