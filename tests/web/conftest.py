"""Fixtures for the ingest tests: a registered shop, the app, and a signed-request helper."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from config import get_settings
from web.app import create_app
from web.signatures import sign
from workers.store import shops

# The repository's copy of the producer's examples (tests/web/test_endpoint.py keeps it equal to the spec's).
EXAMPLES = Path(__file__).resolve().parents[2] / "bench" / "examples"
SHOP = "acme-nl.myshopify.com"
# Another valid-looking secret that the server does not know (a stranger, or a retired key).
FOREIGN_SECRET = "whsec_" + "Zm9yZWlnbi1rZXktbm90LWNvbmZpZ3VyZWQtaGVyZQ=="


def example(name: str) -> dict[str, Any]:
    """One of the spec's example bodies, by file-name prefix ("01", "04", ...)."""
    (path,) = EXAMPLES.glob(f"{name}*.json")
    return json.loads(path.read_text())


def all_examples() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]


def secret() -> str:
    return get_settings().ingest_secrets[0]


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def post_signed(
    client: FlaskClient,
    body: Any,
    *,
    event_id: str | None = None,
    key: str | None = None,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> TestResponse:
    """POST a body (dict → JSON, or raw bytes) signed as the producer would sign it."""
    raw = body if isinstance(body, bytes) else encode(body)
    if event_id is None:
        event_id = body["id"] if isinstance(body, dict) and isinstance(body.get("id"), str) else "evt_x"
    signed = sign(raw, event_id, key or secret(), timestamp)
    signed.update(headers or {})
    return client.post("/v1/return-events", data=raw, headers=signed, content_type=content_type)


@pytest.fixture
def shop(clean_db: str) -> shops.Shop:
    return shops.register_shop(SHOP, "shpat_test")


@pytest.fixture
def app(database: str) -> Flask:
    return create_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    # Not used as a context manager: that would keep request contexts, which threads cannot share.
    return app.test_client()


@pytest.fixture
def status_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {get_settings().status_api_token}"}


Mutator = Callable[[dict[str, Any]], None]


def mutated(body: dict[str, Any], change: Mutator) -> dict[str, Any]:
    copied = copy.deepcopy(body)
    change(copied)
    return copied
