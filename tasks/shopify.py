"""Tasks of the app's access to Shopify (stable names: ``shopify.maintain``)."""

from __future__ import annotations

from datetime import timedelta

from config import get_settings
from tasks.app import app
from tasks.base import ReturnsTask
from tasks.periodic import recorded
from workers import access, webhooks
from workers.store import shops


@app.task(name="shopify.maintain", base=ReturnsTask, retry_policy=None)
def maintain() -> dict[str, int]:
    """Beat: renew the refresh tokens of idle shops before they lapse, and process webhooks a web
    process stored but did not get to (the next beat is the retry of either)."""
    return recorded("shopify.maintain", _maintain)


def _maintain() -> dict[str, int]:
    due = shops.shops_to_refresh(timedelta(seconds=get_settings().refresh_idle_within_s))
    for shop_id in due:
        access.refresh_idle(shop_id)
    return {"refreshed": len(due), "webhooks": webhooks.process_pending()}
