"""All settings, read from the environment once, with defaults that work on a developer machine.

Nothing else in the code base reads ``os.environ``: every process asks ``get_settings()``.
Tests and benchmarks change settings by setting environment variables for the processes they
start (and calling ``get_settings.cache_clear()`` in-process).
"""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, get_type_hints

from cryptography.fernet import Fernet

# Fixed, documented secrets for local runs only (RETURNSYNC_ENV=local: make run, the tests, the
# benchmarks). In production each must be set to a value of one's own: see ``unsafe_settings``.
LOCAL_INGEST_SECRET = "whsec_" + base64.b64encode(b"returnsync-local-development-key").decode()
LOCAL_STATUS_TOKEN = "local-status-token"
LOCAL_FLOWER_AUTH = "operator:local-flower-password"
LOCAL_TOKEN_KEY = base64.urlsafe_b64encode(b"returnsync-local-token-key-32byt").decode()
LOCAL_CLIENT_ID = "returnsync-local"
LOCAL_CLIENT_SECRET = "shpss_local_demo_secret_do_not_use_in_production"
LOCAL_METRICS_AUTH = "prometheus:local-metrics-password"
LOCAL_OPS_PASSWORD = "local-ops-password"
LOCAL_OPS_USER = "operator:" + LOCAL_OPS_PASSWORD
LOCAL_WEB_SECRET_KEY = "returnsync-local-web-secret-key-do-not-use-in-production"
LOCAL_SECRETS = frozenset(
    {
        LOCAL_INGEST_SECRET,
        LOCAL_STATUS_TOKEN,
        LOCAL_FLOWER_AUTH,
        LOCAL_TOKEN_KEY,
        LOCAL_CLIENT_SECRET,
        LOCAL_METRICS_AUTH,
        LOCAL_OPS_USER,
        LOCAL_OPS_PASSWORD,
        LOCAL_WEB_SECRET_KEY,
    }
)
# Per user, so two users of one machine never write into each other's metrics files.
DEFAULT_METRICS_DIR = os.path.join(tempfile.gettempdir(), f"returnsync-metrics-{os.getuid()}")
REQUIRED_SCOPES = ("read_orders", "write_orders", "read_returns", "write_returns")


def dispatch_share(slots: int) -> int:
    """How many runs to hand out at once to workers with this many slots in all: about 80 %, and
    never all of them (``Settings.dispatch_max_in_flight`` says why)."""
    return max(1, slots - max(1, slots // 5))


# `make run`'s worker (Procfile: --concurrency), which the dispatcher's default is sized for.
MAKE_RUN_WORKER_SLOTS = 125


@dataclass(frozen=True)
class Settings:
    # "local" (the repository's fixed secrets are fine) or "production" (the default: every
    # process refuses to start on a missing, local or too short secret).
    returnsync_env: str = "production"

    # Postgres is the source of truth; Redis only carries doorbells for the workers.
    database_url: str = "postgresql://postgres@127.0.0.1:5432/returnsync"
    database_pool_max: int = 10
    # Where the relay LISTENs for new work: a session of its own, so it must reach Postgres itself
    # (or a session-pooled PgBouncer), not a transaction pool. Empty: DATABASE_URL.
    database_listen_url: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"

    # Ingest endpoint (INGEST.md). Several secrets are accepted at once, for rotation.
    ingest_secrets: tuple[str, ...] = (LOCAL_INGEST_SECRET,)
    status_api_token: str = LOCAL_STATUS_TOKEN
    ingest_host: str = "127.0.0.1"
    ingest_port: int = 8000
    ingest_max_body_bytes: int = 256 * 1024
    ingest_timestamp_tolerance_s: int = 300
    ingest_retry_after_s: int = 5
    # A request body must have arrived within this long (slow or stalled clients get a 408).
    ingest_body_timeout_s: float = 10.0
    # Concurrent connections per gunicorn worker process (gevent: a slow client holds a greenlet,
    # not a thread).
    ingest_worker_connections: int = 1000
    # Most events one web process writes in one statement and commit (web/group_commit.py).
    ingest_batch_max: int = 64

    # Shopify Admin API. The URL template gets {shop} and {version}; a shop row may override it.
    shopify_api_version: str = "2026-07"
    shopify_url_template: str = "https://{shop}/admin/api/{version}/graphql.json"
    shopify_connect_timeout_s: float = 3.0
    shopify_read_timeout_s: float = 20.0
    # An egress proxy for every call to Shopify (http://host:port). The HTTP session does not
    # consult HTTPS_PROXY/NO_PROXY/.netrc itself (it would on every request): set it here.
    shopify_proxy_url: str = ""
    shopify_max_attempts: int = 6
    shopify_backoff_base_s: float = 0.5
    shopify_backoff_cap_s: float = 30.0

    # Retries of a whole apply run (workers/retry.py run_policy): attempts per return, counted in
    # Postgres, then the return is failed (replayable). The defaults span about an hour.
    apply_max_attempts: int = 10
    apply_backoff_base_s: float = 5.0
    apply_backoff_cap_s: float = 600.0

    # The relay (workers/relay.py): how often it looks at the outbox (ingest does not notify it:
    # migration 0008 says why), and its backoff while the broker refuses messages.
    relay_poll_s: float = 0.025
    relay_backoff_s: float = 0.5
    relay_backoff_cap_s: float = 30.0

    # Worker behaviour.
    waiting_horizon_s: int = 14 * 24 * 3600
    waiting_retry_s: int = 300
    task_deadline_s: int = 300
    sweep_interval_s: int = 30
    sweep_after_s: int = 60
    order_lock_retry_s: float = 1.0
    # The per-order lease (workers/locking.py): a worker that died holding an order delays that
    # order by at most this long. At least twice a Shopify request's connect + read timeout, so a
    # lease renewed right before a request outlives it (checked when settings are read).
    order_lease_ttl_s: float = 60.0

    # The shop's shared API budget (workers/budget.py): a worker waits for the bucket in place up
    # to this long per request; a longer wait hands the order back (it comes back when the points
    # are there) so the worker serves other shops meanwhile. Until Shopify's first answer tells
    # the real figures, a shop is assumed to have this bucket (Shopify's Standard plan).
    shopify_budget_max_wait_s: float = 1.0
    shopify_default_bucket: float = 2000.0
    shopify_default_restore_rate: float = 100.0

    # Fair dispatch (workers/dispatch.py): at most this many runs handed to the workers at once,
    # and at most this many of one shop (so one shop's backlog leaves the rest of the fleet to the
    # others). Set the first to about 80 % of the fleet's slots (`make run`: one worker of 125),
    # never all of them: a gevent worker whose every slot holds a message stops asking the broker
    # and looks again only on its consumer's next 2 s poll (Celery's synloop), so a run handed
    # out as another ends would wait there. Measured side by side (the fairness benchmark's 99
    # events/s, 2 cores): 100 of 100 slots applied 74-85 events/s, 80 of 100 (and 100 of 125)
    # 88-92/s, with the machine's CPU 90 % busy and so the limit; 80 in flight hid less Shopify
    # latency than 100 (+100 ms per call: 0.75 of the +0 ms throughput against 1.12), hence 125 slots.
    dispatch_max_in_flight: int = dispatch_share(MAKE_RUN_WORKER_SLOTS)
    dispatch_shop_max_in_flight: int = 8

    # returnsync as a Shopify app (APP-AUTH.md). The first client secret is the current one (token
    # requests); every listed one verifies callbacks and webhooks while a secret rotates.
    shopify_client_id: str = LOCAL_CLIENT_ID
    shopify_client_secrets: tuple[str, ...] = (LOCAL_CLIENT_SECRET,)
    shopify_scopes: tuple[str, ...] = REQUIRED_SCOPES
    # Where Shopify reaches us (the install callback and the webhooks), and where we reach a
    # shop's admin (OAuth); `make run` and the tests point the latter at the stand-in.
    app_url: str = "http://127.0.0.1:8000"
    shopify_admin_url_template: str = "https://{shop}/admin"
    # Refresh an expiring token this long before it expires (Shopify's own packages: 60-300 s).
    token_refresh_ahead_s: int = 300
    # How long an install's OAuth `state` may wait for its callback.
    install_state_ttl_s: int = 600
    # The beat's upkeep of app access: idle shops' refresh tokens renewed this long before they
    # lapse, and webhooks a web process stored but did not process, every MAINTAIN_INTERVAL_S.
    refresh_idle_within_s: int = 30 * 24 * 3600
    maintain_interval_s: int = 60

    # Reconciliation on beat (tasks/reconcile.py). Every beat task's message expires after 80 %
    # of its interval (config/celery.py), so runs missed while no worker listened do not pile up.
    # One scheduler at a time (RedBeat's lock in Redis): the active beat renews its lock every
    # BEAT_MAX_LOOP_S at most; a standby beat takes over this long after the active one died
    # without releasing it (a clean stop releases it at once). Must exceed a few loops.
    beat_lock_timeout_s: int = 30
    # How long the beat sleeps at most between looks at its schedule, and how often a standby
    # asks for the lock.
    beat_max_loop_s: int = 5
    # The waiting backoff: a waiting return is looked at again after the time it has waited so
    # far (WAITING_RETRY_S at first, so 5, 10, 20, 40 min...), never less often than this.
    waiting_retry_cap_s: int = 6 * 3600
    # How often the beat fails returns waiting beyond their shop's horizon, and how many per run.
    horizon_interval_s: int = 300
    horizon_batch: int = 100
    # The drift check: returns the sync changed within DRIFT_WINDOW_S are compared with Shopify,
    # each at most once per DRIFT_RECHECK_S (and again after each change), DRIFT_BATCH per run.
    drift_interval_s: int = 600
    drift_window_s: int = 48 * 3600
    drift_recheck_s: int = 3600
    drift_batch: int = 50
    # Retention: event bodies of finished returns are cut to the redacted minimum, and the call
    # log, finished attempts, beat runs and resolved drifts deleted, once older than this;
    # RETENTION_BATCH rows of each kind per run (the next run continues).
    retention_age_s: int = 90 * 24 * 3600
    retention_interval_s: int = 3600
    retention_batch: int = 1000

    # Shop access tokens are encrypted at rest with these Fernet keys (the first encrypts; all of
    # them decrypt, so a key can rotate in: put the new one first, re-encrypt, drop the old one).
    token_encryption_keys: tuple[str, ...] = (LOCAL_TOKEN_KEY,)

    # Flower's basic auth, "user:password" (a config file hands it to Flower, never argv).
    flower_basic_auth: str = LOCAL_FLOWER_AUTH

    # Local Shopify stand-in (the default target of `make run`, tests and benchmarks).
    standin_host: str = "127.0.0.1"
    standin_port: int = 8081
    flower_host: str = "127.0.0.1"
    flower_port: int = 5555

    # Prometheus (workers/metrics.py) in multiprocess mode: every process of one machine (gunicorn
    # workers, Celery's prefork children) writes its series to files in this directory and GET
    # /metrics adds them up. The field is prometheus-client's own variable, so the library and our
    # settings can never disagree; config/prometheus.py exports the default into the environment
    # before the library is used. One directory per machine (or container): emptied when the whole
    # system starts (`make run` does), never shared across pid namespaces.
    prometheus_multiproc_dir: str = DEFAULT_METRICS_DIR
    # GET /metrics answers only with this basic auth, "user:password" (Prometheus' basic_auth):
    # the series name every shop and its backlog.
    metrics_basic_auth: str = LOCAL_METRICS_AUTH

    # The operators' page (/ops, web/ops/): its own logins, "name:password" pairs (comma- or
    # space-separated, so a password holds neither), never the status API's token: an operator
    # can retry and reset what the producer may only read.
    ops_users: tuple[str, ...] = (LOCAL_OPS_USER,)
    # Signs the web process's session cookie (the ops login and its CSRF token): whoever knows it
    # can forge a login, so it is a secret of its own, 32+ characters in production.
    web_secret_key: str = LOCAL_WEB_SECRET_KEY
    # An ops login lasts this long from the moment of logging in, then the operator logs in again
    # (a cookie copied off a machine stops working by itself).
    ops_session_ttl_s: int = 8 * 3600

    log_level: str = "INFO"
    # A line per message handled (a task received and done, an event accepted, a relay round) at
    # LOG_LEVEL too, not only at DEBUG: for watching a local system (`make run` sets it); at
    # production rates they would be most of the output (config/logging.py).
    log_per_message: bool = False
    # "json" (one object per line, for a log shipper) or "text" (for a developer's terminal); empty
    # means json in production and text in the local mode (config/logging.py).
    log_format: str = ""


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
    settings = Settings(**values)
    request_s = settings.shopify_connect_timeout_s + settings.shopify_read_timeout_s
    if settings.order_lease_ttl_s < 2 * request_s:
        raise ValueError(
            "ORDER_LEASE_TTL_S must be at least twice SHOPIFY_CONNECT_TIMEOUT_S + SHOPIFY_READ_TIMEOUT_S"
            f" ({settings.order_lease_ttl_s} < 2 * ({settings.shopify_connect_timeout_s}"
            f" + {settings.shopify_read_timeout_s}))"
        )
    return settings


# Standard Webhooks: a secret is "whsec_" + base64 of 24 to 64 key bytes.
_WEBHOOK_KEY_BYTES = (24, 64)
_MIN_TOKEN_CHARS = 32
_MIN_PASSWORD_CHARS = 16


def _webhook_key_problem(secret: str) -> str | None:
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        return "is not whsec_<base64>"
    low, high = _WEBHOOK_KEY_BYTES
    return (
        None if low <= len(key) <= high else f"decodes to {len(key)} bytes (Standard Webhooks: {low}-{high})"
    )


def unsafe_settings(settings: Settings) -> list[str]:
    """Why these settings must not serve production; empty when they may (or in local mode)."""
    if settings.returnsync_env == "local":
        return []
    problems: list[str] = []
    if settings.returnsync_env != "production":
        problems.append(f"RETURNSYNC_ENV must be local or production, not {settings.returnsync_env!r}")

    def secret(name: str, value: str, minimum: int = 1) -> bool:
        if not value:
            problems.append(f"{name} is not set")
        elif value in LOCAL_SECRETS:
            problems.append(f"{name} is the repository's local value; set one of your own")
        elif len(value) < minimum:
            problems.append(f"{name} is shorter than {minimum} characters")
        else:
            return True
        return False

    if not settings.ingest_secrets:
        problems.append("INGEST_SECRETS is not set")
    for number, value in enumerate(settings.ingest_secrets, 1):
        if secret(f"INGEST_SECRETS #{number}", value) and (problem := _webhook_key_problem(value)):
            problems.append(f"INGEST_SECRETS #{number} {problem}")
    secret("STATUS_API_TOKEN", settings.status_api_token, _MIN_TOKEN_CHARS)
    user, _, password = settings.flower_basic_auth.partition(":")
    if secret("FLOWER_BASIC_AUTH", settings.flower_basic_auth) and (
        not user or len(password) < _MIN_PASSWORD_CHARS
    ):
        problems.append(
            f"FLOWER_BASIC_AUTH must be user:password with a password of {_MIN_PASSWORD_CHARS}+ characters"
        )
    user, _, password = settings.metrics_basic_auth.partition(":")
    if secret("METRICS_BASIC_AUTH", settings.metrics_basic_auth) and (
        not user or len(password) < _MIN_PASSWORD_CHARS
    ):
        problems.append(
            f"METRICS_BASIC_AUTH must be user:password with a password of {_MIN_PASSWORD_CHARS}+ characters"
        )
    secret("WEB_SECRET_KEY", settings.web_secret_key, _MIN_TOKEN_CHARS)
    if not settings.ops_users:
        problems.append("OPS_USERS is not set")
    for number, pair in enumerate(settings.ops_users, 1):
        user, _, password = pair.partition(":")
        if not secret(f"OPS_USERS #{number}", pair):
            continue
        if not user or len(password) < _MIN_PASSWORD_CHARS:
            rule = f"name:password, a password of {_MIN_PASSWORD_CHARS}+ characters"
            problems.append(f"OPS_USERS #{number} must be {rule}")
        elif password in LOCAL_SECRETS:
            problems.append(f"OPS_USERS #{number} has the repository's local password; set one of your own")
    if not settings.shopify_client_id or settings.shopify_client_id == LOCAL_CLIENT_ID:
        problems.append("SHOPIFY_CLIENT_ID is not set to the app's client id")
    if not settings.shopify_client_secrets:
        problems.append("SHOPIFY_CLIENT_SECRETS is not set")
    for number, value in enumerate(settings.shopify_client_secrets, 1):
        secret(f"SHOPIFY_CLIENT_SECRETS #{number}", value, _MIN_PASSWORD_CHARS)
    if not settings.app_url.startswith("https://"):
        problems.append("APP_URL must be the app's public https:// URL (Shopify calls it)")
    if not settings.token_encryption_keys:
        problems.append("TOKEN_ENCRYPTION_KEYS is not set")
    for number, value in enumerate(settings.token_encryption_keys, 1):
        if secret(f"TOKEN_ENCRYPTION_KEYS #{number}", value):
            try:
                Fernet(value)
            except ValueError:
                problems.append(
                    f"TOKEN_ENCRYPTION_KEYS #{number} is not a Fernet key (url-safe base64 of 32 bytes)"
                )
    return problems


def require_safe(settings: Settings, process: str) -> None:
    """Refuse to start (exit with a one-line reason) on settings unfit for production."""
    problems = unsafe_settings(settings)
    if problems:
        raise SystemExit(f"returnsync {process} refuses to start: {'; '.join(problems)}")
