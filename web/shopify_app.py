"""The Shopify-facing side of the web process: install, OAuth callback, and webhooks.

- ``GET /shopify/install?shop=...``: the app's entry (from Shopify, or an install link in a *needs
  reinstall* detail): a redirect to the shop's grant screen with a single-use ``state``;
- ``GET /shopify/callback``: checked and turned into an expiring offline token pair
  (``workers.install``), answered with a plain page saying what happened;
- ``POST /shopify/webhooks``: the ``X-Shopify-Hmac-Sha256`` over the raw body with any client
  secret, or 401 (Shopify requires it); stored before the 200 and de-duplicated on the webhook id,
  processed after the answer is sent (``workers.webhooks``), so Shopify never waits on the work.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import Response, redirect, render_template_string, request

from config import get_settings
from web.body import BadBody, SlowBody, parse_body, read_limited
from web.ingest import slow_body
from web.responses import error, json_response, unavailable
from workers import install, webhooks
from workers.shopify import oauth
from workers.store import webhooks as deliveries
from workers.store.db import DatabaseUnavailable

log = logging.getLogger("web.shopify")

# Order webhooks carry whole orders; far more than any real one, far less than a flood.
MAX_WEBHOOK_BYTES = 2 * 1024 * 1024

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>returnsync</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;line-height:1.5}</style>
</head><body><h1>{{ title }}</h1>{% for line in lines %}<p>{{ line }}</p>{% endfor %}</body></html>"""


def _page(status: int, title: str, *lines: str) -> Response:
    response = Response(render_template_string(_PAGE, title=title, lines=lines), status=status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response


def install_entry() -> Response:
    try:
        return redirect(install.begin(request.args), code=302)  # type: ignore[return-value]
    except install.InstallRefused as exc:
        return _page(400, "returnsync could not start the install", str(exc))
    except DatabaseUnavailable:
        return _page(503, "returnsync is unavailable", "Please try again in a minute.")


def callback() -> Response:
    try:
        shop = install.complete(request.args)
    except install.InstallRefused as exc:
        return _page(400, "returnsync was not installed", str(exc))
    except DatabaseUnavailable:
        return _page(503, "returnsync is unavailable", "Please install again in a minute.")
    if shop.missing_scopes:
        return _page(
            200,
            f"returnsync is installed on {shop.domain}, but cannot sync yet",
            f"The install did not grant: {', '.join(shop.missing_scopes)}.",
            f"Install again and allow every permission: {shop.install_link}",
        )
    return _page(
        200,
        f"returnsync is installed on {shop.domain}",
        f"Granted: {', '.join(shop.granted_scopes or ())}.",
        "Its return events sync now; any that waited for the install are on their way.",
    )


def _header(name: str) -> str | None:
    # Shopify's Python package also accepts the un-prefixed names of events-style deliveries.
    return request.headers.get(f"X-Shopify-{name}") or request.headers.get(f"Shopify-{name}")


def _triggered_at(raw: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None
    except ValueError:
        return None


def receive_webhook() -> Response:
    settings = get_settings()
    try:
        raw = read_limited(MAX_WEBHOOK_BYTES, settings.ingest_body_timeout_s)
    except SlowBody:
        return slow_body(settings.ingest_body_timeout_s)
    if raw is None:
        return error(413, f"the body is over {MAX_WEBHOOK_BYTES} bytes")
    if not oauth.webhook_hmac_ok(raw, _header("Hmac-Sha256"), settings.shopify_client_secrets):
        return error(401, "the X-Shopify-Hmac-Sha256 header does not match the body")
    topic, shop, webhook_id = _header("Topic"), _header("Shop-Domain"), _header("Webhook-Id")
    if not topic or not webhook_id or not oauth.valid_shop_domain(shop):
        return error(400, "X-Shopify-Topic, X-Shopify-Shop-Domain and X-Shopify-Webhook-Id are required")
    assert shop is not None
    try:
        payload = parse_body(raw)
    except BadBody as exc:
        return error(400, str(exc))
    try:
        delivery_id, new = deliveries.record(
            webhook_id, _header("Event-Id"), topic, shop, payload, _triggered_at(_header("Triggered-At"))
        )
    except DatabaseUnavailable:
        return unavailable("the webhook cannot be stored right now")
    response = json_response({"received": webhook_id}, 200)
    if new:
        # After the answer is written: Shopify allows 5 s and must not wait on our work. Should
        # this process die first, the beat processes what is stored (webhooks.process_pending).
        response.call_on_close(lambda: _process_quietly(delivery_id))
    return response


def _process_quietly(delivery_id: int) -> None:
    try:
        webhooks.process(delivery_id)
    except Exception as exc:
        log.warning("webhook delivery %s left for the beat: %s", delivery_id, type(exc).__name__)
