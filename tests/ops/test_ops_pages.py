"""The ops page's rules, request by request (Flask's test client on the real app): a login of its
own, a CSRF token on every change, GETs that change nothing, escaped values, 404 pages for unknown
ids, no stack trace for a bug, and the inbox's filters, search, solve and category repairs."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from config import get_settings
from tests.apply.conftest import ShopUnderTest, event_statuses, return_row
from tests.ops.conftest import Login, csrf_of, log_in, stuck_order
from web.app import create_app
from web.ops import auth, views
from workers.apply import apply_order
from workers.statuses import Category
from workers.store import problems
from workers.store.db import transaction


def text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def state_of(order_id: int, return_id: str) -> tuple[object, ...]:
    """Everything a repair or a solve would change."""
    return (
        return_row(return_id),
        event_statuses(order_id),
        [(p.id, p.solved_at, p.comment) for p in problems.listing(include_solved=True)],
    )


def session_cookie(response: TestResponse) -> SimpleCookie:
    [header] = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("returnsync_ops=")]
    cookie = SimpleCookie()
    cookie.load(header)
    return cookie


@pytest.mark.parametrize(
    "path", ["/ops", "/ops/", "/ops/shops", "/ops/orders/1", "/ops/orders/x", "/ops/nope"]
)
def test_every_page_asks_for_a_login_first(client: FlaskClient, path: str):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/ops/login?next=")


def test_a_post_without_a_login_is_refused_and_changes_nothing(client: FlaskClient, shop: ShopUnderTest):
    _, order_id = stuck_order(shop)
    before = state_of(order_id, "R-OPS-1")
    [problem] = problems.listing()
    # Even with a valid token of a session that never logged in
    token = csrf_of(client.get("/ops/login"))
    for path, form in [
        (f"/ops/orders/{order_id}/retry", {"return_id": "R-OPS-1"}),
        (f"/ops/orders/{order_id}/reset", {"return_id": "R-OPS-1"}),
        (f"/ops/problems/{problem.id}/solve", {"comment": "done"}),
        ("/ops/categories/retry", {"shop": shop.domain, "category": "order_not_fulfilled"}),
    ]:
        response = client.post(path, data={**form, "csrf_token": token})
        assert response.status_code == 401, path
        assert "log in first" in text(response)
    assert state_of(order_id, "R-OPS-1") == before


def test_a_wrong_password_is_refused_and_the_right_one_logs_in(client: FlaskClient, ops_login: Login):
    for name, password in [
        (ops_login.name, "wrong"),
        (ops_login.name, ops_login.password + "x"),
        (ops_login.name, ops_login.other_password),  # bob's password is not alice's
        ("mallory", ops_login.password),
        (ops_login.name, ""),
        (ops_login.name, ops_login.password * 20),
    ]:
        refused = log_in(client, name, password)
        assert refused.status_code == 401
        assert "Wrong name or password." in text(refused)
        assert client.get("/ops").status_code == 302
    allowed = log_in(client, ops_login.other_name, ops_login.other_password, next_page="/ops/shops")
    assert (allowed.status_code, allowed.headers["Location"]) == (303, "/ops/shops")
    page = client.get("/ops/shops")
    assert page.status_code == 200 and ops_login.other_name in text(page)
    # Logging out is a POST with the token too, and ends the session
    assert client.post("/ops/logout").status_code == 403
    assert client.post("/ops/logout", data={"csrf_token": csrf_of(page)}).status_code == 303
    assert client.get("/ops/shops").status_code == 302


def test_the_login_form_needs_its_token_and_never_sends_anyone_off_the_site(
    client: FlaskClient, ops_login: Login
):
    client.get("/ops/login")
    no_token = client.post("/ops/login", data={"name": ops_login.name, "password": ops_login.password})
    assert no_token.status_code == 403
    app = create_app()
    for target in [
        "https://evil.example/ops",
        "//evil.example/ops",
        "/\\evil.example",
        "/elsewhere",
        "/opsx",
    ]:
        response = log_in(app.test_client(), ops_login.name, ops_login.password, next_page=target)
        assert (response.status_code, response.headers["Location"]) == (303, "/ops"), target
    kept = log_in(
        app.test_client(), ops_login.name, ops_login.password, next_page="/ops?shop=a.myshopify.com&q=%231"
    )
    assert kept.headers["Location"] == "/ops?shop=a.myshopify.com&q=%231"


def test_the_session_cookie_is_httponly_lax_for_ops_only_and_secure_behind_https(
    client: FlaskClient, ops_login: Login, monkeypatch: pytest.MonkeyPatch
):
    cookie = session_cookie(log_in(client, ops_login.name, ops_login.password))["returnsync_ops"]
    assert (cookie["httponly"], cookie["samesite"], cookie["path"], cookie["secure"]) == (
        True,
        "Lax",
        "/ops",
        "",
    )
    # What it holds is signed, and names no password
    assert ops_login.password not in cookie.value
    monkeypatch.setenv("APP_URL", "https://returnsync.example.com")
    get_settings.cache_clear()
    secure = create_app().test_client()
    cookie = session_cookie(log_in(secure, ops_login.name, ops_login.password))["returnsync_ops"]
    assert cookie["secure"] is True
    get_settings.cache_clear()


def test_a_login_ends_when_its_pair_changes_or_its_time_is_up(
    logged_in: FlaskClient, ops_login: Login, monkeypatch: pytest.MonkeyPatch
):
    assert logged_in.get("/ops").status_code == 200
    # A forged session (signed with another key) is no login
    forged = create_app().test_client()
    monkeypatch.setenv("WEB_SECRET_KEY", "another-key-" + "k" * 40)
    get_settings.cache_clear()
    forger = create_app()
    with forger.test_request_context():
        cookie = forger.session_interface.get_signing_serializer(forger).dumps(  # type: ignore[attr-defined]
            {"user": ops_login.name, "fp": "0" * 64, "since": 2**40}
        )
    forged.set_cookie("returnsync_ops", cookie, path="/ops")
    assert forged.get("/ops").status_code == 302
    monkeypatch.delenv("WEB_SECRET_KEY")
    # The password changed in OPS_USERS: the old session no longer counts
    monkeypatch.setenv("OPS_USERS", f"{ops_login.name}:a-new-password-of-alice")
    get_settings.cache_clear()
    changed = create_app().test_client()
    old = logged_in.get_cookie("returnsync_ops", path="/ops")
    assert old is not None
    changed.set_cookie("returnsync_ops", old.value, path="/ops")
    assert changed.get("/ops").status_code == 302
    get_settings.cache_clear()
    # And OPS_SESSION_TTL_S after the login, it is over (the clock moved, not the test's time)
    now = auth.time.time()
    monkeypatch.setattr(auth.time, "time", lambda: now + get_settings().ops_session_ttl_s + 1)
    assert logged_in.get("/ops").status_code == 302


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(
    logged_in: FlaskClient, shop: ShopUnderTest, ops_login: Login
):
    gid, order_id = stuck_order(shop)
    shop.admin.fulfill(shop.domain, gid)
    before = state_of(order_id, "R-OPS-1")
    [problem] = problems.listing()
    token = csrf_of(logged_in.get(f"/ops/orders/{order_id}"))
    other = create_app().test_client()
    log_in(other, ops_login.other_name, ops_login.other_password)
    foreign = csrf_of(other.get("/ops"))  # bob's valid token is not alice's
    assert foreign != token
    forms = [
        (f"/ops/orders/{order_id}/retry", {"return_id": "R-OPS-1"}),
        (f"/ops/orders/{order_id}/reset", {"return_id": "R-OPS-1"}),
        (f"/ops/problems/{problem.id}/solve", {"comment": "done"}),
        ("/ops/categories/retry", {"shop": shop.domain, "category": "order_not_fulfilled"}),
        ("/ops/categories/reset", {"shop": shop.domain, "category": "order_not_fulfilled", "confirm": "yes"}),
    ]
    for path, form in forms:
        for wrong in [None, "", "guessed", token[:-1], foreign]:
            data = form if wrong is None else {**form, "csrf_token": wrong}
            response = logged_in.post(path, data=data)
            assert response.status_code == 403, (path, wrong)
            assert "this form has expired" in text(response)
        # The token in a query string is not the form's
        assert logged_in.post(path + f"?csrf_token={token}", data=form).status_code == 403
    assert state_of(order_id, "R-OPS-1") == before
    # GETs change nothing, whatever they carry
    logged_in.get(f"/ops/orders/{order_id}/retry?return_id=R-OPS-1&csrf_token={token}")
    logged_in.get(f"/ops/orders/{order_id}?action=retry&csrf_token={token}")
    assert state_of(order_id, "R-OPS-1") == before
    # With its token, the same retry goes through
    done = logged_in.post(f"/ops/orders/{order_id}/retry", data={"return_id": "R-OPS-1", "csrf_token": token})
    assert (done.status_code, done.headers["Location"]) == (303, f"/ops/orders/{order_id}")
    assert return_row("R-OPS-1")["sync"] == "pending"
    assert apply_order(order_id).outcome == "applied"
    assert 'class="sync sync-synced">synced<' in text(logged_in.get(f"/ops/orders/{order_id}"))


def test_unknown_ids_are_404_pages(logged_in: FlaskClient, shop: ShopUnderTest):
    _, order_id = stuck_order(shop)
    token = csrf_of(logged_in.get("/ops"))
    for path in [
        "/ops/orders/999999",
        "/ops/orders/abc",
        f"/ops/orders/{2**70}",
        "/ops/orders/-1",
        "/ops/x/y",
    ]:
        response = logged_in.get(path)
        assert response.status_code == 404, path
        assert response.content_type.startswith("text/html") and "404 Not Found" in text(response)
    for path, form in [
        ("/ops/orders/999999/retry", {"return_id": "R-OPS-1"}),
        (f"/ops/orders/{order_id}/retry", {"return_id": "R-NOT-HERE"}),
        (f"/ops/orders/{order_id}/reset", {"return_id": "R-NOT-HERE"}),
        ("/ops/problems/999999/solve", {"comment": "done"}),
        ("/ops/categories/retry", {"shop": "nobody.myshopify.com", "category": "order_not_fulfilled"}),
    ]:
        response = logged_in.post(path, data={**form, "csrf_token": token})
        assert response.status_code == 404, path
        assert "404 Not Found" in text(response)
    assert logged_in.get("/ops?category=no_such_thing").status_code == 400
    assert logged_in.get("/ops?q=%00").status_code == 400
    assert return_row("R-OPS-1")["sync"] == "waiting"


def test_values_from_shops_and_events_are_escaped(logged_in: FlaskClient, shop: ShopUnderTest):
    _, order_id = stuck_order(shop)
    with transaction() as cur:
        cur.execute("UPDATE orders SET order_name = '<script>alert(1)</script>' WHERE id = %s", (order_id,))
        cur.execute("UPDATE problems SET reason = '<img src=x onerror=alert(2)>'")
        cur.execute("UPDATE events SET detail = '\"><b>bold</b>' WHERE order_id = %s", (order_id,))
    for path in ["/ops", f"/ops/orders/{order_id}", "/ops?q=%3Cscript%3E"]:
        page = text(logged_in.get(path))
        assert "<script>" not in page and "<img" not in page and "<b>bold" not in page, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text(logged_in.get("/ops"))
    assert "&lt;img src=x onerror=alert(2)&gt;" in text(logged_in.get("/ops"))
    assert "&#34;&gt;&lt;b&gt;bold&lt;/b&gt;" in text(logged_in.get(f"/ops/orders/{order_id}"))


def test_no_stack_trace_reaches_the_client_and_the_order_page_survives_shopify(
    logged_in: FlaskClient, shop: ShopUnderTest, monkeypatch: pytest.MonkeyPatch
):
    _, order_id = stuck_order(shop)

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("secret internals at /work/main/web/ops/views.py")

    monkeypatch.setattr(views.reports, "shops", broken)
    response = logged_in.get("/ops/shops")
    assert response.status_code == 500
    assert "Traceback" not in text(response) and "secret internals" not in text(response)
    assert "Something went wrong on our side" in text(response)
    # Without the live diagnosis the order page shows what Postgres holds
    monkeypatch.setattr(views, "diagnose_order", broken)
    page = text(logged_in.get(f"/ops/orders/{order_id}"))
    assert 'id="offline"' in page and "R-OPS-1 waits: order not fulfilled yet." in page
    assert "secret internals" not in page


def test_pages_carry_headers_that_keep_them_out_of_frames_caches_and_scripts(logged_in: FlaskClient):
    response = logged_in.get("/ops")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert "script-src" not in response.headers["Content-Security-Policy"]  # default-src 'none'
    assert "<script" not in text(response)


def test_the_inbox_filters_searches_solves_and_repairs_a_category(
    logged_in: FlaskClient, shop: ShopUnderTest
):
    gid_1, order_1 = stuck_order(shop, "#7201", "R-A")
    gid_2, order_2 = stuck_order(shop, "#7202", "R-B")

    def listed(query: str = "") -> list[str]:
        return re.findall(r'data-return="([^"]+)"', text(logged_in.get("/ops" + query)))

    assert sorted(listed()) == ["R-A", "R-B"]
    assert listed(f"?shop={shop.domain}&q=%237201") == ["R-A"]
    assert listed(f"?q={gid_2}") == ["R-B"]
    assert listed("?q=R-B&category=order_not_fulfilled") == ["R-B"]
    assert listed("?category=budget") == []
    assert listed("?shop=other.myshopify.com") == []
    assert f'href="/ops/orders/{order_1}"' in text(logged_in.get("/ops"))

    # Solving needs a comment, and says who solved it
    page = logged_in.get("/ops")
    token = csrf_of(page)
    [problem_a] = problems.listing(search="R-A")
    empty = logged_in.post(f"/ops/problems/{problem_a.id}/solve", data={"csrf_token": token, "comment": " "})
    assert empty.status_code == 303 and problems.listing(search="R-A") != []
    solved = logged_in.post(
        f"/ops/problems/{problem_a.id}/solve",
        data={"csrf_token": token, "comment": "merchant asked to fulfil", "back": "/ops?q=R-A"},
    )
    assert (solved.status_code, solved.headers["Location"]) == (303, "/ops?q=R-A")
    assert listed() == ["R-B"]
    assert listed("?solved=1&q=R-A") == ["R-A"]
    [done] = problems.listing(search="R-A", include_solved=True)
    assert (done.solved_by, done.comment) == ("alice", "merchant asked to fulfil")
    assert "solved" in text(logged_in.get("/ops?solved=1&q=R-A"))

    # Retry of a whole category in a shop; a category reset asks for its confirmation
    shop.admin.fulfill(shop.domain, gid_2)
    form = {"csrf_token": token, "shop": shop.domain, "category": Category.ORDER_NOT_FULFILLED}
    unconfirmed = logged_in.post("/ops/categories/reset", data=form)
    assert unconfirmed.status_code == 303 and return_row("R-B")["sync"] == "waiting"
    assert "Tick the box" in text(logged_in.get("/ops"))
    retried = logged_in.post("/ops/categories/retry", data=form)
    assert retried.status_code == 303
    assert "retry of order_not_fulfilled in" in text(logged_in.get("/ops"))
    assert {return_row("R-A")["sync"], return_row("R-B")["sync"]} == {"pending"}
    assert apply_order(order_2).outcome == "applied"
    assert apply_order(order_1).outcome == "waiting"  # still not fulfilled: back in the inbox
    assert listed() == ["R-A"]


def test_the_shops_page_lists_each_shop_with_its_backlog(logged_in: FlaskClient, shop: ShopUnderTest):
    stuck_order(shop)
    page = text(logged_in.get("/ops/shops"))
    row = re.search(rf'<tr data-shop="{re.escape(shop.domain)}">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row.group(1), re.S)]
    assert cells[0] == shop.domain and cells[1] == "active" and cells[2] == "static"
    assert cells[8:12] == ["1", "0", "1", "0"]  # unsynced, pending, waiting, failed
