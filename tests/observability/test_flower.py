"""Flower's live view with the workers as the Procfile starts them: task events are off until a
monitor asks for them (config/celery.py), and Flower asks as soon as it connects."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import requests

from config.settings import LOCAL_FLOWER_AUTH
from tests.observability.conftest import BIN, ROOT, child_env, probe_worker_argv
from tests.support.net import free_port


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_flower_shows_the_tasks_a_gevent_worker_runs(redis_client: object) -> None:
    from tasks.app import app as celery_app

    queue = f"flower-{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = child_env(FLOWER_PORT=str(port))
    hostname = f"flower-probe-{uuid.uuid4().hex[:6]}@test"
    worker = _start(probe_worker_argv(queue, hostname, "-P", "gevent", "--concurrency", "4"), env)
    flower = _start([str(BIN / "celery"), "-A", "tasks.app", "flower", "--conf=config/flower.py"], env)
    auth = tuple(LOCAL_FLOWER_AUTH.split(":", 1))
    sent: list[str] = []
    seen: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(s == "SUCCESS" for s in seen.values()):
            assert worker.poll() is None and flower.poll() is None, "worker or Flower exited"
            # Tasks sent before Flower switched the worker's events on are not in its view: keep
            # sending until one is.
            sent.append(celery_app.send_task("observability.probe", args=["x"], queue=queue).id)
            time.sleep(1.0)
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/tasks", auth=auth, timeout=5)
            except requests.RequestException:
                continue
            if answer.status_code == 200:
                seen = {tid: task.get("state", "") for tid, task in answer.json().items() if tid in sent}
    finally:
        _stop(flower)
        _stop(worker)
    assert any(state == "SUCCESS" for state in seen.values()), (sent[-5:], seen)
