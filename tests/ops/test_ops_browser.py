"""The ops page as an operator uses it, in a real (headless) browser against the real app: log in,
find a stuck order in the inbox, read why, fix the cause on Shopify, press Retry, see it synced.
And a form on another page of the same site cannot make the operator's browser retry anything."""

from __future__ import annotations

from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.apply.conftest import ShopUnderTest, event_statuses, return_row
from tests.ops.conftest import Login, serve, stuck_order
from workers.apply import apply_order
from workers.store import problems

# A bound on waiting for a page, not a speed assertion.
PAGE_S = 20


def wait_for(browser: Any, css: str) -> Any:
    return WebDriverWait(browser, PAGE_S).until(seen.presence_of_element_located((By.CSS_SELECTOR, css)))


def submit_login(browser: Any, name: str, password: str) -> None:
    form = wait_for(browser, "form#login")
    form.find_element(By.NAME, "name").send_keys(name)
    form.find_element(By.NAME, "password").send_keys(password)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def return_section(browser: Any, return_id: str) -> Any:
    return wait_for(browser, f'section.return[data-return="{return_id}"]')


def test_an_operator_finds_a_stuck_order_reads_why_retries_it_and_sees_it_synced(
    browser: Any, ops_server: str, ops_login: Login, shop: ShopUnderTest
):
    gid, order_id = stuck_order(shop, "#7001", "R-OPS-1")
    stuck_order(shop, "#7002", "R-OPS-2")  # another stuck order the search must leave out

    # Every page asks for a login first; a wrong password is refused
    browser.get(ops_server + "/ops")
    WebDriverWait(browser, PAGE_S).until(seen.url_contains("/ops/login"))
    submit_login(browser, ops_login.name, "not-the-password")
    assert wait_for(browser, "#login-error").text == "Wrong name or password."
    assert "/ops/login" in browser.current_url
    submit_login(browser, ops_login.name, ops_login.password)
    filters = wait_for(browser, "form#filters")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#problems tr[data-return]")) == 2

    # The search box finds the stuck order
    Select(filters.find_element(By.NAME, "shop")).select_by_value(shop.domain)
    filters.find_element(By.NAME, "q").send_keys("#7001")
    filters.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, PAGE_S).until(seen.url_contains("q="))
    [row] = browser.find_elements(By.CSS_SELECTOR, "#problems tr[data-return]")
    assert row.get_attribute("data-return") == "R-OPS-1"
    assert "order_not_fulfilled" in row.text and "info" in row.text
    assert row.find_element(By.CSS_SELECTOR, "td.reason").text == "R-OPS-1 waits: order not fulfilled yet."

    # Its order page says why, with the live checks the diagnosis made on Shopify
    row.find_element(By.CSS_SELECTOR, "a.order-link").click()
    section = return_section(browser, "R-OPS-1")
    assert section.find_element(By.CSS_SELECTOR, ".sync").text == "waiting"
    assert "order not fulfilled yet" in section.find_element(By.CSS_SELECTOR, ".sentence").text
    assert "fulfil the order in Shopify" in section.find_element(By.CSS_SELECTOR, ".repair").text
    assert section.find_element(By.CSS_SELECTOR, 'tr[data-check="fulfilled"] td:nth-child(2)').text == "NO"
    assert section.find_element(By.CSS_SELECTOR, 'tr[data-check="scopes"] td:nth-child(2)').text == "ok"
    kinds = {cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#timeline td:nth-child(2)")}
    assert kinds == {"event", "state", "run", "shopify"}

    # The merchant fulfils the order; the operator presses Retry
    shop.admin.fulfill(shop.domain, gid)
    section.find_element(By.CSS_SELECTOR, "button.retry").click()
    flash = wait_for(browser, ".flash.ok")
    assert flash.text == "retry of R-OPS-1: 1 event(s) back to work; the relay rings the order."
    assert return_section(browser, "R-OPS-1").find_element(By.CSS_SELECTOR, ".sync").text == "pending"
    assert problems.listing(shop.domain, search="#7001") == []

    # The worker's run (the relay would ring it) syncs it; the reloaded page shows it
    assert apply_order(order_id).outcome == "applied"
    browser.refresh()
    section = return_section(browser, "R-OPS-1")
    assert section.find_element(By.CSS_SELECTOR, ".sync").text == "synced"
    assert section.find_element(By.CSS_SELECTOR, ".sentence").text.startswith("R-OPS-1 is synced")
    assert section.find_element(By.CSS_SELECTOR, 'tr[data-check="fulfilled"] td:nth-child(2)').text == "ok"
    assert [r["status"] for r in shop.shopify_returns() if r["orderId"] == gid] == ["OPEN"]

    # The inbox keeps only the other order; logging out ends the session
    browser.find_element(By.LINK_TEXT, "Inbox").click()
    wait_for(browser, "form#filters")
    rows = browser.find_elements(By.CSS_SELECTOR, "#problems tr[data-return]")
    assert [r.get_attribute("data-return") for r in rows] == ["R-OPS-2"]
    browser.find_element(By.XPATH, "//button[text()='Log out']").click()
    wait_for(browser, "form#login")
    browser.get(ops_server + "/ops/shops")
    wait_for(browser, "form#login")


def test_a_form_on_another_page_cannot_retry_for_a_logged_in_operator(
    browser: Any, ops_server: str, ops_login: Login, shop: ShopUnderTest
):
    gid, order_id = stuck_order(shop, "#7101", "R-OPS-9")
    shop.admin.fulfill(shop.domain, gid)  # a retry would go through: only the token stops it
    browser.get(ops_server + "/ops/login")
    submit_login(browser, ops_login.name, ops_login.password)
    wait_for(browser, "form#filters")
    before = (return_row("R-OPS-9"), event_statuses(order_id))

    # Another port of the same host is the same site: the browser sends the session cookie along,
    # so the CSRF token is what refuses (a forged one too).
    target = f"{ops_server}/ops/orders/{order_id}/retry"
    forged = (
        '<form method="post" action="%s"><input name="return_id" value="R-OPS-9">%s'
        '<button id="go" type="submit">claim your prize</button></form>'
    )

    def attacker(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        extra = '<input name="csrf_token" value="guessed">' if "guess" in environ["PATH_INFO"] else ""
        start_response("200 OK", [("Content-Type", "text/html")])
        return [(forged % (target, extra)).encode()]

    url, server, thread = serve(attacker)
    try:
        for page in ("/", "/guess"):
            browser.get(url + page)
            wait_for(browser, "#go").click()
            assert wait_for(browser, "#error-message").text.startswith("this form has expired")
            assert browser.find_element(By.TAG_NAME, "h1").text == "403 Forbidden"
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert (return_row("R-OPS-9"), event_statuses(order_id)) == before
    assert [p.return_id for p in problems.listing(shop.domain)] == ["R-OPS-9"]
