"""Fixtures for the Shopify layer: pinned schemas (built once per session), small settings, a shop."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from graphql import GraphQLSchema, build_schema

from config import get_settings
from workers.shopify import client as client_module
from workers.shopify.client import Endpoint, StaticToken

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "shared" / "shopify" / "schema"
if not SCHEMA_DIR.is_dir():  # the shared folder sits next to the repository (../shared)
    SCHEMA_DIR = Path("/work/shared/shopify/schema")
CAPTURES_DIR = SCHEMA_DIR.parent / "captures"

_schemas: dict[str, GraphQLSchema] = {}


def load_schema(version: str) -> GraphQLSchema:
    # ~3 s per build: once per session, shared by every module that asks.
    if version not in _schemas:
        _schemas[version] = build_schema((SCHEMA_DIR / f"admin-{version}.graphql").read_text())
    return _schemas[version]


@pytest.fixture(scope="session")
def schema_2026_07() -> GraphQLSchema:
    return load_schema("2026-07")


@pytest.fixture(scope="session")
def schema_2026_04() -> GraphQLSchema:
    return load_schema("2026-04")


@pytest.fixture
def small_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Few attempts and tiny timeouts so failure paths finish quickly."""
    monkeypatch.setenv("SHOPIFY_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("SHOPIFY_BACKOFF_BASE_S", "0.01")
    monkeypatch.setenv("SHOPIFY_BACKOFF_CAP_S", "0.05")
    monkeypatch.setenv("SHOPIFY_CONNECT_TIMEOUT_S", "1.0")
    monkeypatch.setenv("SHOPIFY_READ_TIMEOUT_S", "0.3")
    get_settings.cache_clear()
    client_module.reset_session()
    yield
    get_settings.cache_clear()
    client_module.reset_session()


def make_endpoint(url_template: str, token: str = "shpat_secret_token_value") -> Endpoint:
    domain = "acme-nl.myshopify.com"
    return Endpoint(domain, url_template.format(shop=domain, version="2026-07"), StaticToken(token))
