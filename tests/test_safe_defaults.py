"""Safe by default: outside the local mode no process starts on a missing, local or short secret;
Flower answers only with credentials and sends no wildcard CORS."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from config import Settings, unsafe_settings
from config.settings import (
    LOCAL_FLOWER_AUTH,
    LOCAL_INGEST_SECRET,
    LOCAL_METRICS_AUTH,
    LOCAL_OPS_PASSWORD,
    LOCAL_OPS_USER,
    LOCAL_STATUS_TOKEN,
    LOCAL_WEB_SECRET_KEY,
)
from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def production_secrets() -> dict[str, str]:
    """A production configuration of one's own, as an operator would set it."""
    return {
        "RETURNSYNC_ENV": "production",
        "INGEST_SECRETS": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "STATUS_API_TOKEN": secrets.token_urlsafe(32),
        "FLOWER_BASIC_AUTH": "ops:" + secrets.token_urlsafe(24),
        "METRICS_BASIC_AUTH": "prometheus:" + secrets.token_urlsafe(24),
        "OPS_USERS": "alice:" + secrets.token_urlsafe(24),
        "WEB_SECRET_KEY": secrets.token_urlsafe(48),
        "TOKEN_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SHOPIFY_CLIENT_ID": "8f2c0d1e",
        "SHOPIFY_CLIENT_SECRETS": "shpss_" + secrets.token_hex(16),
        "APP_URL": "https://returnsync.example.com",
    }


def settings(**values: object) -> Settings:
    env = {key.lower(): value for key, value in production_secrets().items()}
    env.update(values)
    for plural in ("ingest_secrets", "token_encryption_keys", "shopify_client_secrets", "ops_users"):
        if isinstance(env[plural], str):
            env[plural] = (env[plural],)
    return Settings(**env)  # type: ignore[arg-type]


def test_the_local_mode_accepts_the_repositorys_secrets_and_production_does_not():
    assert unsafe_settings(Settings(returnsync_env="local")) == []
    problems = unsafe_settings(Settings())  # production is the default
    assert problems == [
        "INGEST_SECRETS #1 is the repository's local value; set one of your own",
        "STATUS_API_TOKEN is the repository's local value; set one of your own",
        "FLOWER_BASIC_AUTH is the repository's local value; set one of your own",
        "METRICS_BASIC_AUTH is the repository's local value; set one of your own",
        "WEB_SECRET_KEY is the repository's local value; set one of your own",
        "OPS_USERS #1 is the repository's local value; set one of your own",
        "SHOPIFY_CLIENT_ID is not set to the app's client id",
        "SHOPIFY_CLIENT_SECRETS #1 is the repository's local value; set one of your own",
        "APP_URL must be the app's public https:// URL (Shopify calls it)",
        "TOKEN_ENCRYPTION_KEYS #1 is the repository's local value; set one of your own",
    ]
    assert unsafe_settings(settings()) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"ingest_secrets": ()}, "INGEST_SECRETS is not set"),
        ({"ingest_secrets": ("whsec_" + base64.b64encode(b"short").decode(),)}, "decodes to 5 bytes"),
        ({"ingest_secrets": ("whsec_" + base64.b64encode(bytes(65)).decode(),)}, "decodes to 65 bytes"),
        ({"ingest_secrets": ("not-a-secret",)}, "is not whsec_<base64>"),
        (
            {"ingest_secrets": ("whsec_" + base64.b64encode(bytes(32)).decode(), LOCAL_INGEST_SECRET)},
            "#2 is the",
        ),
        ({"status_api_token": ""}, "STATUS_API_TOKEN is not set"),
        ({"status_api_token": LOCAL_STATUS_TOKEN}, "STATUS_API_TOKEN is the repository's local value"),
        ({"status_api_token": "short"}, "STATUS_API_TOKEN is shorter than 32"),
        ({"flower_basic_auth": LOCAL_FLOWER_AUTH}, "FLOWER_BASIC_AUTH is the repository's local value"),
        ({"flower_basic_auth": "ops:short"}, "password of 16+"),
        ({"metrics_basic_auth": LOCAL_METRICS_AUTH}, "METRICS_BASIC_AUTH is the repository's local value"),
        ({"metrics_basic_auth": "prometheus:short"}, "METRICS_BASIC_AUTH must be user:password"),
        ({"metrics_basic_auth": ":" + "p" * 20}, "METRICS_BASIC_AUTH must be user:password"),
        ({"metrics_basic_auth": ""}, "METRICS_BASIC_AUTH is not set"),
        ({"web_secret_key": LOCAL_WEB_SECRET_KEY}, "WEB_SECRET_KEY is the repository's local value"),
        ({"web_secret_key": "short"}, "WEB_SECRET_KEY is shorter than 32"),
        ({"web_secret_key": ""}, "WEB_SECRET_KEY is not set"),
        ({"ops_users": ()}, "OPS_USERS is not set"),
        ({"ops_users": (LOCAL_OPS_USER,)}, "OPS_USERS #1 is the repository's local value"),
        ({"ops_users": ("admin:" + LOCAL_OPS_PASSWORD,)}, "OPS_USERS #1 has the repository's local password"),
        ({"ops_users": ("alice:" + "p" * 20, "bob:short")}, "OPS_USERS #2 must be name:password"),
        ({"ops_users": (":" + "p" * 20,)}, "OPS_USERS #1 must be name:password"),
        ({"token_encryption_keys": ("not a fernet key",)}, "is not a Fernet key"),
        ({"returnsync_env": "staging"}, "RETURNSYNC_ENV must be local or production"),
        ({"shopify_client_secrets": ("short",)}, "SHOPIFY_CLIENT_SECRETS #1 is shorter than 16"),
        ({"app_url": "http://returnsync.example.com"}, "APP_URL must be the app's public https://"),
    ],
)
def test_each_unsafe_setting_is_named(change: dict[str, object], problem: str):
    assert any(problem in line for line in unsafe_settings(settings(**change)))


def run_briefly(
    argv: list[str], env: dict[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout_s
    )


@pytest.mark.parametrize(
    ("process", "argv"),
    [
        ("web", [str(BIN / "gunicorn"), "-c", "web/gunicorn_conf.py", "web.wsgi:application"]),
        ("celery", [str(BIN / "celery"), "-A", "tasks.app", "worker", "--pool", "solo"]),
        ("flower", [str(BIN / "celery"), "-A", "tasks.app", "flower", "--conf=config/flower.py"]),
        ("relay", [sys.executable, "-m", "workers.relay"]),
    ],
)
def test_every_process_refuses_to_start_in_production_on_the_local_secrets(process: str, argv: list[str]):
    port = str(free_port())
    done = run_briefly(argv, {"RETURNSYNC_ENV": "production", "INGEST_PORT": port, "FLOWER_PORT": port})
    assert done.returncode != 0
    reason = [line for line in (done.stdout + done.stderr).splitlines() if "refuses to start" in line]
    assert reason, done.stderr[-2000:]
    assert "INGEST_SECRETS #1 is the repository's local value" in reason[-1]
    # The reason names what is wrong, never the value itself.
    assert LOCAL_STATUS_TOKEN not in done.stdout + done.stderr


def test_with_secrets_of_its_own_the_web_process_starts_in_production(database: str):
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", "web/gunicorn_conf.py", "web.wsgi:application"],
        cwd=ROOT,
        env={**os.environ, **production_secrets(), "INGEST_HOST": "127.0.0.1", "INGEST_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert _wait_http(f"http://127.0.0.1:{port}/healthz", proc) == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def _wait_http(url: str, proc: subprocess.Popen[bytes], auth: tuple[str, str] | None = None) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode()[-2000:] if proc.stderr else "exited")
        try:
            return requests.get(url, timeout=2, auth=auth).status_code
        except requests.RequestException:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


def test_flower_asks_for_credentials_and_sends_no_wildcard_cors(redis_client: object):
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "celery"), "-A", "tasks.app", "flower", "--conf=config/flower.py"],
        cwd=ROOT,
        env={**os.environ, "FLOWER_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    user, _, password = LOCAL_FLOWER_AUTH.partition(":")
    try:
        assert _wait_http(base + "/", proc) == 401
        for path in ("/workers", "/tasks", "/broker", "/metrics", "/api/workers"):
            anonymous = requests.get(base + path, timeout=10, headers={"Origin": "https://evil.example"})
            assert anonymous.status_code == 401, path
            assert "Access-Control-Allow-Origin" not in anonymous.headers
        wrong = requests.get(base + "/workers", timeout=10, auth=(user, "guess"))
        assert wrong.status_code == 401
        allowed = requests.get(base + "/workers", timeout=10, auth=(user, password))
        assert allowed.status_code == 200
        assert "Access-Control-Allow-Origin" not in allowed.headers
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
