"""Fixtures for the ops page: logins of the test's own, the real app (a Flask test client, or served
on a real port), a stuck order seeded through the real sync, and Debian's headless Chromium driven
by Selenium."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.serving import make_server
from werkzeug.test import TestResponse

from config import get_settings
from tests.apply.conftest import ShopUnderTest, admin, shop  # noqa: F401  (the fixtures, for tests here)
from web.app import create_app
from workers.apply import apply_order

ROOT = Path(__file__).resolve().parents[2]
# Debian's packages (make test installs them); nothing is downloaded at run time.
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ITEMS = {101: 1}


@dataclass(frozen=True)
class Login:
    name: str
    password: str
    other_name: str
    other_password: str


@pytest.fixture
def ops_login() -> Iterator[Login]:
    """Two operators with passwords of the test's own (the local default pair is not used)."""
    login = Login("alice", "alice-" + secrets.token_urlsafe(18), "bob", "bob-" + secrets.token_urlsafe(18))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPS_USERS", f"{login.name}:{login.password},{login.other_name}:{login.other_password}")
        get_settings.cache_clear()
        yield login
    get_settings.cache_clear()


@pytest.fixture
def client(ops_login: Login, clean_db: str) -> FlaskClient:
    return create_app().test_client()


def csrf_of(response: TestResponse) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert found, "no CSRF token on the page"
    return found.group(1)


def log_in(client: FlaskClient, name: str, password: str, next_page: str | None = None) -> TestResponse:
    token = csrf_of(client.get("/ops/login"))
    form = {"csrf_token": token, "name": name, "password": password}
    if next_page is not None:
        form["next"] = next_page
    return client.post("/ops/login", data=form)


@pytest.fixture
def logged_in(client: FlaskClient, ops_login: Login) -> FlaskClient:
    assert log_in(client, ops_login.name, ops_login.password).status_code == 303
    return client


def stuck_order(on: ShopUnderTest, name: str = "#7001", return_id: str = "R-OPS-1") -> tuple[str, int]:
    """An order NOT fulfilled on Shopify and a return of it, applied by the real sync: the return
    waits (order_not_fulfilled). Returns the order's GID and row id."""
    gid = on.order(name, ITEMS, fulfilled=False)
    order_id = on.event("created", return_id, order_gid=gid, order_name=name, items=ITEMS)
    assert apply_order(order_id).outcome == "waiting"
    return gid, order_id


def serve(app: Any) -> tuple[str, Any, threading.Thread]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{server.server_port}", server, thread


@pytest.fixture
def ops_server(ops_login: Login, clean_db: str) -> Iterator[str]:
    """The real web app (web.app.create_app) on a port of its own; returns its base URL."""
    # The test server's access log is noise here.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    url, server, thread = serve(create_app())
    try:
        yield url
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the session, on a fresh profile, with nothing that phones home
    (this machine's network is closed, and a test must not wait on it)."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        message = "Debian's chromium and chromium-driver are not installed (make test installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ops-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    # No password manager bubbles over the page after a login.
    options.add_experimental_option(
        "prefs", {"credentials_enable_service": False, "profile.password_manager_enabled": False}
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=os.devnull), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(chromium: Any, ops_server: str) -> Any:
    """The session's browser with no cookie of an earlier test (cookies go by host, not port)."""
    chromium.get(ops_server + "/ops/login")
    chromium.delete_all_cookies()
    return chromium
