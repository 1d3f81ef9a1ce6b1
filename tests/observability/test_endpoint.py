"""GET /metrics: behind its own basic auth, the series of every process of the machine, the
backlog from Postgres; through a real gunicorn too, whose workers all share the directory."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import requests

from config import get_settings
from config.settings import LOCAL_STATUS_TOKEN
from tests.observability.conftest import (
    BIN,
    METRICS_AUTH,
    ROOT,
    child_env,
    parse,
    run_python,
    value,
    wait_until,
)
from tests.support.net import SwitchableProxy, free_port
from web.app import create_app


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(METRICS_AUTH[0], "wrong-password"),
        basic("someone", METRICS_AUTH[1]),
        {"Authorization": f"Bearer {LOCAL_STATUS_TOKEN}"},  # the status API's token opens nothing here
        {"Authorization": "Basic not-base64"},
    ],
)
def test_metrics_ask_for_their_own_credentials(headers: dict[str, str]):
    response = create_app().test_client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert b"returnsync_" not in response.data


def test_with_the_credentials_prometheus_gets_the_text_format(database: str):
    response = create_app().test_client().get("/metrics", headers=basic(*METRICS_AUTH))
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert value(parse(response.get_data(as_text=True)), "returnsync_backlog_query_ok") == 1


def test_the_scrape_adds_up_the_other_processes_of_the_machine(app_server):
    shop = f"elsewhere-{uuid.uuid4().hex[:8]}.myshopify.com"
    # Processes of their own (a worker, another gunicorn worker), sharing this session's directory.
    for _ in range(2):
        run_python(
            f"from workers import metrics; metrics.event_accepted({shop!r}, 'return.requested')", child_env()
        )
    samples = app_server.scrape()
    assert value(samples, "returnsync_events_accepted_total", shop=shop, type="return.requested") == 2


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_real_gunicorn_serves_every_worker_and_says_when_postgres_is_away(database: str, tmp_path: Path):
    port = free_port()
    name = get_settings().database_url.rsplit("/", 1)[1]
    with SwitchableProxy("127.0.0.1", 5432) as postgres, tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "web/gunicorn_conf.py", "web.wsgi:application"],
            cwd=ROOT,
            env=child_env(
                INGEST_HOST="127.0.0.1",
                INGEST_PORT=str(port),
                PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
                LOG_FORMAT="json",
                DATABASE_URL=f"postgresql://postgres@127.0.0.1:{postgres.port}/{name}",
            ),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        try:

            def answers() -> bool:
                try:
                    return requests.get(base + "/healthz", timeout=2).status_code == 200
                except requests.RequestException:
                    return False

            assert wait_until(answers, 60)
            # Every worker has the directory (each made its files there when it loaded the app).
            assert wait_until(lambda: len(list(tmp_path.glob("counter_*.db"))) >= 2, 60)
            scraped = requests.get(base + "/metrics", auth=METRICS_AUTH, timeout=30)
            assert scraped.status_code == 200
            assert value(parse(scraped.text), "returnsync_backlog_query_ok") == 1

            postgres.down()
            away = parse(requests.get(base + "/metrics", auth=METRICS_AUTH, timeout=30).text)
            assert value(away, "returnsync_backlog_query_ok") == 0
            assert not [key for key in away if key[0] == "returnsync_backlog_returns"]
            assert value(away, "returnsync_beat_interval_seconds", task="returns.sweep") is not None
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        log.seek(0)
        lines = _json_lines(log.read().decode())

    # gunicorn's own lines and the app's, one JSON object each, from the one handler.
    assert {line["logger"] for line in lines} >= {"gunicorn.error", "workers.metrics"}
    assert all(
        line["process"] == "web" and {"time", "level", "message", "pid"} <= set(line) for line in lines
    )
    assert any(
        line["logger"] == "workers.metrics" and "backlog query failed" in str(line["message"])
        for line in lines
    )
