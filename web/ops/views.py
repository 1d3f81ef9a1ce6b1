"""The operators' page under ``/ops``: the error inbox, an order with its live diagnosis and its
timeline, and the shops.

Server-rendered with Flask's Jinja, whose autoescape covers every value shown (shop domains, order
names and reasons come from shops and events). Every page needs a login of its own
(``web.ops.auth``); GETs only read, and every change (retry, reset, solve, log out) is a POST
carrying the session's CSRF token. The repairs are ``workers.repair``'s, the CLI's own: they
change Postgres only, and the relay rings the orders they touch.
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from flask.wrappers import Request
from markupsafe import Markup
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from config import get_settings
from web.ops import auth
from workers import repair
from workers.diagnose import Diagnosis, diagnose_order, explain, repair_for
from workers.statuses import Category, SyncState
from workers.store import problems, reports
from workers.store import returns as store
from workers.store.db import DatabaseUnavailable
from workers.store.shops import find_shop, get_shop

log = logging.getLogger("web.ops")

bp = Blueprint("ops", __name__, url_prefix="/ops", template_folder="templates")

# Row ids are bigints: a larger number in a path is no row (404), not a query Postgres refuses.
# Checked in the views: werkzeug's int(max=) makes such a path match no route, the API's JSON 404.
_MAX_ID = 2**63 - 1
_MAX_FIELD = 200
_MAX_COMMENT = 2000
_TIMELINE_ROWS = 500
# Nothing but our own page: no script at all, the inline CSS, forms posting to us, never framed
# (a framed page could be clicked through by another site).
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_MARKS = {True: "ok", False: "NO", None: "?"}


def _users() -> auth.Users:
    users: auth.Users = current_app.extensions["returnsync_ops"]
    return users


def _rule() -> str:
    # The route's rule, never the raw path: a path is the client's text.
    return request.url_rule.rule if request.url_rule is not None else "(no route)"


def _here() -> str:
    query = request.query_string.decode("utf-8", "replace")
    return request.path + (f"?{query}" if query else "")


def _safe_next(value: str | None) -> str:
    """Where to go after a login or a POST: a page of ours, never another site (an open redirect
    would lend our name to a phishing link)."""
    default = url_for("ops.inbox")
    if not value or len(value) > 2000 or "\\" in value or any(ord(c) < 32 for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not (parts.path == "/ops" or parts.path.startswith("/ops/")):
        return default
    return value


def _text(value: str | None, limit: int = _MAX_FIELD) -> str | None:
    """A field for a query: None when empty; 400 for what no row can hold (Postgres refuses NUL)."""
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > limit or "\x00" in value:
        abort(400, "a field is too long or holds a character no value can have")
    return value


def _category(value: str | None) -> Category | None:
    if value is None:
        return None
    try:
        return Category(value)
    except ValueError:
        abort(400, "no such category")


def _when(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def _csrf_field() -> Markup:
    # Markup's % escapes the token, like autoescape would.
    return Markup('<input type="hidden" name="csrf_token" value="%s">') % auth.csrf_token()


@bp.context_processor
def _template_helpers() -> dict[str, Any]:
    return {
        "user": g.get("ops_user"),
        "csrf_field": _csrf_field,
        "when": _when,
        "mark": lambda ok: _MARKS.get(ok, "?"),
    }


@bp.before_request
def _guard() -> ResponseReturnValue | None:
    user = None
    if request.endpoint != "ops.login":
        user = auth.current_user(_users())
        if user is None:
            if request.method in ("GET", "HEAD"):
                return redirect(url_for("ops.login", next=_here()))
            abort(401, "log in first")
    if request.method == "POST" and not auth.csrf_ok():
        log.warning("ops: POST %s refused without a valid CSRF token", _rule())
        abort(403, "this form has expired or did not come from this page; reload the page and try again")
    g.ops_user = user
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Frame-Options"] = "DENY"
    # Pages hold shops' data and forms with the CSRF token: neither belongs in a cache.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> ResponseReturnValue:
    code = exc.code or 500
    page = render_template("ops/error.html", code=code, title=exc.name, message=exc.description)
    headers = {}
    valid_methods = getattr(exc, "valid_methods", None)
    if code == 405 and valid_methods:
        headers["Allow"] = ", ".join(valid_methods)
    return page, code, headers


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> ResponseReturnValue:
    if isinstance(exc, DatabaseUnavailable):
        code, message = 503, "The database cannot be reached right now; try again in a moment."
    else:
        # Where it happened for the log, nothing of it for the page.
        tb = "".join(traceback.format_tb(exc.__traceback__))
        log.error("ops: unexpected %s on %s %s\n%s", type(exc).__name__, request.method, _rule(), tb)
        code, message = 500, "Something went wrong on our side; the web process's log says where."
    title = "Service unavailable" if code == 503 else "Internal error"
    return render_template("ops/error.html", code=code, title=title, message=message), code


# --- login -----------------------------------------------------------------------------------------


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    users = _users()
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        if auth.current_user(users) is not None:
            return redirect(target)
        return render_template("ops/login.html", next=target, failed=False)
    name = request.form.get("name", "")
    password = request.form.get("password", "")
    found = None
    if len(name) <= _MAX_FIELD and len(password) <= _MAX_FIELD:
        found = users.check(name, password)
    if found is None:
        log.warning("ops: a login was refused")
        return render_template("ops/login.html", next=target, failed=True), 401
    auth.log_in(users, found)
    log.info("ops: %s logged in", found)
    return redirect(target, 303)


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    auth.log_out()
    return redirect(url_for("ops.login"), 303)


# --- the inbox -------------------------------------------------------------------------------------


# The decorator nearest the function registers first, and url_for builds the first: "/ops".
@bp.route("/", methods=["GET"])
@bp.route("", methods=["GET"])
def inbox() -> ResponseReturnValue:
    shop = _text(request.args.get("shop"))
    category = _category(_text(request.args.get("category")))
    include_solved = request.args.get("solved") == "1"
    search = _text(request.args.get("q"))
    rows = problems.listing(shop, category, include_solved=include_solved, search=search)
    listed = [
        (p, p.reason if p.solved_at else explain(p.return_id, p.sync, p.category, p.reason)) for p in rows
    ]
    groups = sorted(Counter((p.shop, p.category) for p in rows if p.solved_at is None).items())
    return render_template(
        "ops/inbox.html",
        listed=listed,
        groups=groups,
        shops=[row["shop"] for row in reports.shops()],
        categories=list(Category),
        filters={"shop": shop or "", "category": category or "", "solved": include_solved, "q": search or ""},
        back=_here(),
    )


@bp.route("/problems/<int:problem_id>/solve", methods=["POST"])
def solve(problem_id: int) -> ResponseReturnValue:
    back = _safe_next(request.form.get("back"))
    comment = _text(request.form.get("comment"), _MAX_COMMENT)
    if comment is None:
        flash("Say how it was solved: the comment is what the next operator reads.", "error")
        return redirect(back, 303)
    if problem_id > _MAX_ID or not problems.solve(problem_id, by=g.ops_user, comment=comment):
        abort(404, "There is no open problem with this id (solved already?).")
    log.info("ops: %s solved problem %s", g.ops_user, problem_id)
    flash(f"Problem {problem_id} solved.", "ok")
    return redirect(back, 303)


@bp.route("/categories/<any(retry, reset):action>", methods=["POST"])
def repair_category(action: str) -> ResponseReturnValue:
    back = _safe_next(request.form.get("back"))
    domain = _text(request.form.get("shop"))
    category = _category(_text(request.form.get("category")))
    if domain is None or category is None:
        abort(400, "name a shop and a category")
    if find_shop(domain) is None:
        abort(404, "There is no such shop.")
    # A reset of a whole category replays many returns from their events: asked twice.
    if action == "reset" and request.form.get("confirm") != "yes":
        flash("Tick the box to confirm a reset of a whole category.", "error")
        return redirect(back, 303)
    act = repair.reset if action == "reset" else repair.retry
    count = act(domain, category=category)
    log.info("ops: %s ran %s of category %s in %s: %d event(s)", g.ops_user, action, category, domain, count)
    flash(f"{action} of {category} in {domain}: {count} event(s) back to work; the relay rings them.", "ok")
    return redirect(back, 303)


# --- an order --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReturnView:
    """One return on the order page: the diagnosis, and what Postgres holds of it."""

    diagnosis: Diagnosis
    applied_state: str | None
    shopify_status: str | None
    updated_at: datetime | None


def _offline(shop: str, order: str, row: dict[str, Any]) -> Diagnosis:
    """The stored half of a diagnosis, for when Shopify cannot be asked."""
    sync = SyncState(row["sync"])
    category = Category(row["category"]) if row["category"] else None
    return Diagnosis(
        shop=shop,
        return_id=row["return_id"],
        order=order,
        sync=sync,
        category=category,
        sentence=explain(row["return_id"], sync, category, row["detail"]),
        repair=repair_for(shop, row["return_id"], category, sync),
    )


def _order_or_404(order_id: int) -> tuple[store.OrderRow, str]:
    row = store.load_order(order_id) if order_id <= _MAX_ID else None
    if row is None:
        abort(404, "There is no order with this id.")
    return row, get_shop(row.shop_id).domain


@bp.route("/orders/<int:order_id>", methods=["GET"])
def order(order_id: int) -> ResponseReturnValue:
    row, domain = _order_or_404(order_id)
    label = row.order_name or row.order_gid or row.order_ref
    # order_ref is the GID or else the name, so one of the two always finds the order's returns.
    stored = [
        r
        for r in reports.returns(domain, search=row.order_gid or row.order_name)
        if r["order_id"] == order_id
    ]
    live = True
    try:
        diagnoses = diagnose_order(order_id)
    except Exception as exc:
        # The live checks are extra: without them the page still shows the stored state.
        log.warning("ops: no live diagnosis of order %s (%s)", order_id, type(exc).__name__)
        live = False
        diagnoses = [_offline(domain, label, r) for r in stored]
    by_id = {r["return_id"]: r for r in stored}
    views = [
        ReturnView(
            d,
            by_id.get(d.return_id, {}).get("state"),
            by_id.get(d.return_id, {}).get("shopify_status"),
            by_id.get(d.return_id, {}).get("updated_at"),
        )
        for d in diagnoses
    ]
    return render_template(
        "ops/order.html",
        order=row,
        shop=domain,
        label=label,
        returns=views,
        live=live,
        timeline=reports.timeline(order_id, limit=_TIMELINE_ROWS),
        timeline_limit=_TIMELINE_ROWS,
    )


@bp.route("/orders/<int:order_id>/<any(retry, reset):action>", methods=["POST"])
def repair_return(order_id: int, action: str) -> ResponseReturnValue:
    row, domain = _order_or_404(order_id)
    return_id = _text(request.form.get("return_id"))
    if return_id is None:
        abort(400, "name the return")
    if reports.order_of(domain, return_id) != order_id:
        abort(404, "This order has no such return.")
    act = repair.reset if action == "reset" else repair.retry
    count = act(domain, return_id=return_id, order_id=row.id)
    log.info("ops: %s ran %s on order %s of %s: %d event(s)", g.ops_user, action, order_id, domain, count)
    if count:
        flash(f"{action} of {return_id}: {count} event(s) back to work; the relay rings the order.", "ok")
    else:
        flash(f"{action} of {return_id}: no event to put back to work.", "ok")
    return redirect(url_for("ops.order", order_id=order_id), 303)


# --- shops -----------------------------------------------------------------------------------------


@bp.route("/shops", methods=["GET"])
def shops() -> ResponseReturnValue:
    return render_template("ops/shops.html", shops=reports.shops())


@bp.route("/<path:rest>", methods=["GET", "POST"])
def not_found(rest: str) -> ResponseReturnValue:
    # Every other path under /ops (a bad id included) gets the page's own 404, not the API's JSON.
    abort(404, "There is no such page.")


class _OpsOnlySession(SecureCookieSessionInterface):
    """Flask opens the session of every request, building a signing serializer each time (3 % of
    an ingest request's CPU). The cookie's path is /ops, so no other request carries one: they
    get Flask's null session, which nothing outside /ops writes."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path != "/ops" and not request.path.startswith("/ops/"):
            return self.make_null_session(app)
        return super().open_session(app, request)


def register(app: Flask) -> None:
    """Serve /ops on the app: its session cookie, its logins, its routes."""
    settings = get_settings()
    # Flask's session is the ops login's alone: the cookie goes only to /ops, never to script
    # (HttpOnly), not with other sites' POSTs (Lax), and only over TLS where the app has it.
    app.secret_key = settings.web_secret_key
    app.session_interface = _OpsOnlySession()
    app.config.update(
        SESSION_COOKIE_NAME="returnsync_ops",
        SESSION_COOKIE_PATH="/ops",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.app_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=settings.ops_session_ttl_s,
    )
    app.extensions["returnsync_ops"] = auth.Users.from_settings(settings)
    app.register_blueprint(bp)
