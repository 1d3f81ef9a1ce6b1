"""The ops page's secrets in production, on the real web process (gunicorn with gevent): the
repository's OPS_USERS and WEB_SECRET_KEY are refused at start, and with values of one's own the
page logs in over gevent and sets its cookie Secure (APP_URL is https)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from config.settings import LOCAL_OPS_PASSWORD, LOCAL_OPS_USER, LOCAL_WEB_SECRET_KEY
from tests.support.net import free_port
from tests.test_safe_defaults import _wait_http, production_secrets, run_briefly

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GUNICORN = [str(BIN / "gunicorn"), "-c", "web/gunicorn_conf.py", "web.wsgi:application"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"OPS_USERS": LOCAL_OPS_USER}, "OPS_USERS #1 is the repository's local value"),
        ({"OPS_USERS": "alice:" + LOCAL_OPS_PASSWORD}, "OPS_USERS #1 has the repository's local password"),
        ({"OPS_USERS": "alice:tiny-pw"}, "OPS_USERS #1 must be name:password"),
        ({"WEB_SECRET_KEY": LOCAL_WEB_SECRET_KEY}, "WEB_SECRET_KEY is the repository's local value"),
        ({"WEB_SECRET_KEY": "too-short"}, "WEB_SECRET_KEY is shorter than 32"),
    ],
)
def test_the_web_process_refuses_the_local_ops_login_and_session_key(change: dict[str, str], reason: str):
    port = str(free_port())
    done = run_briefly(GUNICORN, {**production_secrets(), **change, "INGEST_PORT": port})
    assert done.returncode != 0
    said = [line for line in (done.stdout + done.stderr).splitlines() if "refuses to start" in line]
    assert said and reason in said[-1], done.stderr[-2000:]
    # The reason names the setting, never its value
    assert not any(value.partition(":")[2] in said[-1] for value in change.values() if ":" in value)


def test_with_its_own_values_the_page_logs_in_on_gunicorn_and_sets_a_secure_cookie(database: str):
    port = free_port()
    env = {**production_secrets(), "INGEST_HOST": "127.0.0.1", "INGEST_PORT": str(port)}
    name, _, password = env["OPS_USERS"].partition(":")
    proc = subprocess.Popen(
        GUNICORN,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert _wait_http(base + "/healthz", proc) == 200
        page = requests.get(base + "/ops", timeout=10)
        assert page.url.startswith(base + "/ops/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        # The cookie is Secure (APP_URL is https), so a client sends it back over TLS only: this
        # plain-http test hands it back itself.
        assert "; Secure" in page.headers["Set-Cookie"]
        cookie = {"Cookie": "returnsync_ops=" + page.cookies["returnsync_ops"]}
        form = {"csrf_token": token.group(1), "name": name, "password": password}
        refused = requests.post(
            base + "/ops/login", data={**form, "password": "guess"}, headers=cookie, timeout=10
        )
        assert refused.status_code == 401
        answer = requests.post(
            base + "/ops/login", data=form, headers=cookie, timeout=10, allow_redirects=False
        )
        assert answer.status_code == 303
        set_cookie = answer.headers["Set-Cookie"]
        assert "Secure" in set_cookie and "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
        logged_in = {"Cookie": "returnsync_ops=" + answer.cookies["returnsync_ops"]}
        inbox = requests.get(base + "/ops", headers=logged_in, timeout=10, allow_redirects=False)
        assert inbox.status_code == 200 and "Error inbox" in inbox.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
