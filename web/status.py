"""``GET /v1/returns/{shop}/{return id}``: where a return stands (INGEST.md), for the producer."""

from __future__ import annotations

import hmac
import re

from flask import Response, request

from config import get_settings
from web.responses import error, json_response, unavailable
from workers.events import ID_PATTERN, SHOP_PATTERN
from workers.store import inbox
from workers.store.db import DatabaseUnavailable

_SHOP = re.compile(SHOP_PATTERN.removeprefix("^").removesuffix("$"))
_RETURN_ID = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))


def bearer_ok(header: str | None, token: str) -> bool:
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Bytes, not str: compare_digest raises TypeError on non-ASCII str, and a header can be anything.
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8"))


def return_status(shop: str, return_id: str) -> Response:
    if not bearer_ok(request.headers.get("Authorization"), get_settings().status_api_token):
        response = error(401, "missing or wrong bearer token")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    # A segment no event can carry (a control character, a NUL Postgres would refuse) names no
    # return: 404, like any unknown one, without a query.
    if _SHOP.fullmatch(shop) is None or _RETURN_ID.fullmatch(return_id) is None:
        return error(404, "no event of this return was ever accepted")
    try:
        body = inbox.return_status(shop, return_id)
    except DatabaseUnavailable:
        return unavailable("the status cannot be read right now; retry later")
    if body is None:
        return error(404, "no event of this return was ever accepted")
    return json_response(body, 200)
