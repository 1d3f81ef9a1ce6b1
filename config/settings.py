"""All settings, read from the environment once, with defaults that work on a developer machine.

Nothing else in the code base reads ``os.environ``: every process asks ``get_settings()``.
Tests and benchmarks change settings by setting environment variables for the processes they
start (and calling ``get_settings.cache_clear()`` in-process).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, get_type_hints

# A fixed, documented secret for local runs only; production sets INGEST_SECRETS.
LOCAL_INGEST_SECRET = "whsec_" + base64.b64encode(b"returnsync-local-development-key").decode()
LOCAL_STATUS_TOKEN = "local-status-token"


@dataclass(frozen=True)
class Settings:
    # Postgres is the source of truth; Redis only carries doorbells for the workers.
    database_url: str = "postgresql://postgres@127.0.0.1:5432/returnsync"
    database_pool_max: int = 10
    redis_url: str = "redis://127.0.0.1:6379/0"

    # Ingest endpoint (INGEST.md). Several secrets are accepted at once, for rotation.
    ingest_secrets: tuple[str, ...] = (LOCAL_INGEST_SECRET,)
    status_api_token: str = LOCAL_STATUS_TOKEN
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8000
    ingest_max_body_bytes: int = 256 * 1024
    ingest_timestamp_tolerance_s: int = 300
    ingest_retry_after_s: int = 5

    # Shopify Admin API. The URL template gets {shop} and {version}; a shop row may override it.
    shopify_api_version: str = "2026-07"
    shopify_url_template: str = "https://{shop}/admin/api/{version}/graphql.json"
    shopify_connect_timeout_s: float = 3.0
    shopify_read_timeout_s: float = 20.0
    shopify_max_attempts: int = 6
    shopify_backoff_base_s: float = 0.5
    shopify_backoff_cap_s: float = 30.0

    # Retries of a whole apply run (workers/retry.py run_policy): attempts per return, counted in
    # Postgres, then the return is failed (replayable). The defaults span about an hour.
    apply_max_attempts: int = 10
    apply_backoff_base_s: float = 5.0
    apply_backoff_cap_s: float = 600.0

    # Worker behaviour.
    waiting_horizon_s: int = 14 * 24 * 3600
    waiting_retry_s: int = 300
    task_deadline_s: int = 300
    sweep_interval_s: int = 30
    sweep_after_s: int = 60
    order_lock_retry_s: float = 1.0

    # Local Shopify stand-in (the default target of `make run`, tests and benchmarks).
    standin_host: str = "127.0.0.1"
    standin_port: int = 8081
    flower_port: int = 5555

    log_level: str = "INFO"


def _convert(raw: str, kind: object) -> object:
    if kind is int:
        return int(raw)
    if kind is float:
        return float(raw)
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if kind == tuple[str, ...]:
        # Space- or comma-separated, so several secrets fit in one variable.
        return tuple(part for part in raw.replace(",", " ").split() if part)
    return raw


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Build settings from the environment: each field is read from its upper-case name."""
    hints = get_type_hints(Settings)
    values: dict[str, Any] = {}
    for field in fields(Settings):
        raw = os.environ.get(field.name.upper())
        if raw is not None and raw != "":
            values[field.name] = _convert(raw, hints[field.name])
    return Settings(**values)
