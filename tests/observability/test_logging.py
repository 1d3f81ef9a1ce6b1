"""JSON logs: real processes logging through config.logging.configure give one parseable object
per line, with the context fields, and never a token or a secret."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from config import Settings
from config.logging import MASK, known_secrets, log_format, mask
from config.settings import (
    LOCAL_FLOWER_AUTH,
    LOCAL_METRICS_AUTH,
    LOCAL_OPS_PASSWORD,
    LOCAL_STATUS_TOKEN,
    LOCAL_TOKEN_KEY,
    LOCAL_WEB_SECRET_KEY,
)
from tests.observability.conftest import (
    ROOT,
    child_env,
    probe_worker_argv,
    run_python,
    scrape_dir,
    value,
    wait_until,
)


def emit(log_format: str, process: str = "probe") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.observability.emit_logs", process],
        cwd=ROOT,
        env=child_env(LOG_FORMAT=log_format),
        capture_output=True,
        text=True,
        timeout=60,
    )


def by_message(lines: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    return {str(line["message"]).split()[0]: line for line in lines}


def test_every_line_is_one_json_object_with_the_context_fields():
    done = emit("json")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert len(lines) == 14  # the forged line stayed inside its message
    for line in lines:
        assert {"time", "level", "logger", "message", "process", "pid"} <= set(line)
        assert line["process"] == "probe" and line["logger"] == "workers.probe"
        assert str(line["time"]).endswith("+00:00")
    found = by_message(lines)
    assert "shop" not in found["plain"] and "task_id" not in found["plain"]
    assert found["bound"]["shop"] == "acme-nl.myshopify.com" and found["bound"]["event_id"] == "evt_1"
    assert found["nested"]["order_id"] == 1106 and found["nested"]["shop"] == "acme-nl.myshopify.com"
    assert "order_id" not in found["after-nesting"] and found["after-nesting"]["shop"]
    assert "shop" not in found["unbound"]
    assert found["extra"]["order_id"] == 7 and found["extra"]["shop"] == "extra.myshopify.com"
    assert found["two"]["message"] == 'two lines\nforged {"level": "INFO"}'
    assert found["failure"]["level"] == "ERROR" and "RuntimeError" in str(found["failure"]["exc"])


def test_no_token_or_secret_reaches_the_output():
    for chosen in ("json", "text"):
        done = emit(chosen)
        out = done.stdout + done.stderr
        for secret in (
            "shpat_abc123",
            "abc123",
            "shpss_secret42",
            "whsec_c2VjcmV0",
            "abc.def-ghi",
            "b3BzOmh1bnRlcjI=",
            LOCAL_TOKEN_KEY,
            "hunter2hunter2",
            LOCAL_STATUS_TOKEN,
            "refresh999",
        ):
            assert secret not in out, (chosen, secret)
        assert out.count(MASK) >= 10
    lines = by_message([json.loads(line) for line in emit("json").stderr.splitlines()])
    assert lines["token"]["message"] == (
        f"token in the message shpat_{MASK} and the args shpss_{MASK} whsec_{MASK}"
    )


def test_the_text_format_is_one_readable_line_with_its_context():
    done = emit("text", process="relay")
    assert done.returncode == 0, done.stderr
    nested = next(line for line in done.stderr.splitlines() if "nested adds the order" in line)
    assert " INFO relay[" in nested and " workers.probe: nested adds the order " in nested
    assert nested.endswith("[event_id=evt_1 shop=acme-nl.myshopify.com order_id=1106]")


def test_an_unknown_log_format_stops_the_process():
    done = emit("xml")
    assert done.returncode != 0
    assert "LOG_FORMAT must be one of json, text, not 'xml'" in done.stderr


def test_json_is_the_default_in_production_and_text_in_the_local_mode():
    assert log_format(Settings()) == "json"
    assert log_format(Settings(returnsync_env="local")) == "text"
    assert log_format(Settings(returnsync_env="local", log_format="JSON")) == "json"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("X-Shopify-Access-Token: shpat_0123456789abcdef", f"X-Shopify-Access-Token: shpat_{MASK}"),
        ("secret=shpss_local_demo_secret_do_not_use", f"secret=shpss_{MASK}"),
        ("refresh_token=shprt_a-b_c", f"refresh_token=shprt_{MASK}"),
        ("token shpca_XYZ done", f"token shpca_{MASK} done"),
        ("whsec_cmV0dXJuc3luYy1sb2NhbA==,", f"whsec_{MASK},"),
        ("authorization: bearer tok.en", f"authorization: bearer {MASK}"),
        ("Authorization: Basic dXNlcjpwYXNz", f"Authorization: Basic {MASK}"),
        ("postgresql://postgres:pw@db:5432/returnsync", f"postgresql://postgres:{MASK}@db:5432/returnsync"),
        (f"key {LOCAL_TOKEN_KEY} rotated", f"key {MASK} rotated"),
        # What logs are for stays readable.
        ("order #1106 of acme-nl.myshopify.com: ReturnCreate ok", None),
        ("event evt_01HZX applied (return R-100234)", None),
        ("redis://127.0.0.1:6379/0", None),
    ],
)
def test_mask(text: str, masked: str | None):
    assert mask(text) == (text if masked is None else masked)
    assert mask(mask(text)) == mask(text)


def test_the_settings_own_secrets_are_masked_by_value():
    known = known_secrets(Settings())
    for secret in (
        LOCAL_STATUS_TOKEN,
        LOCAL_FLOWER_AUTH.partition(":")[2],
        LOCAL_METRICS_AUTH.partition(":")[2],
        LOCAL_OPS_PASSWORD,
        LOCAL_WEB_SECRET_KEY,
    ):
        assert mask(f"it was {secret}!", known) == f"it was {MASK}!"


def test_a_celery_worker_logs_json_with_the_task_id_and_reports_its_heartbeat_and_beat_runs(
    clean_db: str, redis_client: object, tmp_path: Path
):
    """A real worker (prefork), started as the Procfile starts it and without
    PROMETHEUS_MULTIPROC_DIR: its settings' default directory gets its heartbeat and the beat
    task's run, and every line it logs is JSON, the task's with the task's id."""
    from tasks.app import app as celery_app

    queue = f"observability-{uuid.uuid4().hex[:8]}"
    hostname = f"probe-{uuid.uuid4().hex[:6]}@observability"
    env = {k: v for k, v in child_env(LOG_FORMAT="json", TMPDIR=str(tmp_path)).items()}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    metrics_dir = tmp_path / f"returnsync-metrics-{os.getuid()}"
    with tempfile.TemporaryFile() as stderr:
        worker = subprocess.Popen(
            probe_worker_argv(queue, hostname, "--concurrency", "1", "--without-gossip", "--without-mingle"),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )

        def log_lines() -> list[str]:
            stderr.seek(0)
            return [line for line in stderr.read().decode(errors="replace").splitlines() if line.strip()]

        def heartbeat() -> float | None:
            if not metrics_dir.is_dir():
                return None
            return value(
                scrape_dir(metrics_dir), "returnsync_worker_heartbeat_timestamp_seconds", worker=hostname
            )

        try:
            assert wait_until(lambda: heartbeat() is not None, 60), log_lines()[-20:]
            first = heartbeat()
            probe = celery_app.send_task("observability.probe", args=["shpat_abc123"], queue=queue)
            celery_app.send_task("returns.sweep", queue=queue)
            assert wait_until(lambda: any("probe-bound" in line for line in log_lines()), 60), log_lines()[
                -20:
            ]
            assert wait_until(
                lambda: value(
                    scrape_dir(metrics_dir),
                    "returnsync_beat_last_run_timestamp_seconds",
                    task="returns.sweep",
                )
                is not None,
                60,
            ), log_lines()[-20:]
            # Heartbeats go on (every 2 s) while the worker lives.
            assert wait_until(lambda: (heartbeat() or 0) > (first or 0), 30)
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
        lines = [json.loads(line) for line in log_lines()]  # every line: one JSON object

    assert all(line["process"] == "worker" for line in lines)
    run = next(line for line in lines if str(line["message"]).startswith("probe-run"))
    bound = next(line for line in lines if line["message"] == "probe-bound")
    assert run["task_id"] == bound["task_id"] == probe.id
    assert run["message"] == f"probe-run with shpat_{MASK}"
    assert bound["shop"] == "probe.myshopify.com" and bound["order_id"] == 42
    assert any(line["logger"].startswith("celery") for line in lines)  # Celery's own lines too
    assert "shpat_abc123" not in json.dumps(lines)


_PER_MESSAGE_PROBE = """
import logging
from config.logging import PER_MESSAGE_LOGGERS, configure
configure("probe")
for name in PER_MESSAGE_LOGGERS:
    logging.getLogger(name).info("per-message line of " + name)
logging.getLogger("celery.app.trace").error("a failed task")
logging.getLogger("workers.probe").info("an ordinary line")
"""


@pytest.mark.parametrize("per_message", [None, "true"])
def test_a_line_per_message_only_when_asked_for(per_message: str | None):
    env = child_env(LOG_FORMAT="json", LOG_LEVEL="INFO")
    env.pop("LOG_PER_MESSAGE", None)
    if per_message:
        env["LOG_PER_MESSAGE"] = per_message
    done = run_python(_PER_MESSAGE_PROBE, env)
    messages = [json.loads(line)["message"] for line in done.stderr.splitlines()]
    per_message_lines = [m for m in messages if m.startswith("per-message line")]
    # Failures and ordinary lines always; the per-message loggers only for a local system.
    assert "a failed task" in messages and "an ordinary line" in messages
    assert len(per_message_lines) == (4 if per_message else 0), messages
