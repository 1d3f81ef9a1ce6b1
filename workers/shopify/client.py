"""HTTP client for the Shopify Admin GraphQL API: retries, rate limits and outcome reporting.

What it retries and what it refuses to retry is the point of this module:

- ``THROTTLED`` (HTTP 200) and HTTP 429 were not executed by Shopify, so every request, mutations
  included, is retried after the wait Shopify asks for, up to a bound beyond which ``Throttled``
  lets the caller reschedule instead of holding a worker.
- 5xx, timeouts and dropped connections are retried with exponential backoff and full jitter, for
  queries only. A *mutation* that may have reached Shopify is never re-sent here: create mutations
  are not idempotent on Shopify's side, so the caller gets ``OutcomeUnknown`` and must re-read the
  order before deciding. A mutation whose connection was never established is safe to retry.
- Authentication, scope and GraphQL validation errors are permanent and raised at once.

Every HTTP exchange is reported through ``on_call`` as a ``CallRecord`` (the per-order timeline and
the cost accounting). Tokens never appear in records, exceptions or logs.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from config import get_settings
from workers.store.shops import Shop

log = logging.getLogger(__name__)

# A throttle wait longer than this (summed over one execute call) is handed back to the caller:
# a worker should not sleep for half a minute holding an order's lock.
DEFAULT_MAX_THROTTLE_WAIT_S = 30.0
# The wait when a throttled answer carries no usable figures (no Retry-After, no throttleStatus):
# one second is what Shopify's REST limiter sends and refills any plan's bucket noticeably.
_FALLBACK_THROTTLE_WAIT_S = 1.0
_DETAIL_MAX = 2000

OUTCOMES = (
    "ok",
    "user_errors",
    "throttled",
    "http_error",
    "timeout",
    "connection_error",
    "access_denied",
    "graphql_error",
)


@dataclass(frozen=True)
class CallRecord:
    """One HTTP exchange with Shopify, as stored in ``shopify_calls``."""

    operation: str
    outcome: str
    http_status: int | None
    requested_cost: int | None
    actual_cost: int | None
    duration_ms: int
    detail: str | None = None


class ShopifyError(Exception):
    """Base of every error this client raises."""


class ShopifyUnavailable(ShopifyError):
    """Shopify could not be reached or kept failing: transient, try again later."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OutcomeUnknown(ShopifyUnavailable):
    """A mutation may or may not have been applied: re-read Shopify before sending it again."""


class Throttled(ShopifyUnavailable):
    """The shop's API budget needs longer than we are willing to wait in-process."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"throttled by Shopify; retry after {retry_after_s:.1f}s", retry_after_s)


class Unauthorized(ShopifyError):
    """HTTP 401/403: the token is invalid or revoked (the app was uninstalled)."""

    def __init__(self, http_status: int) -> None:
        super().__init__(f"Shopify refused the access token (HTTP {http_status})")
        self.http_status = http_status


class AccessDenied(ShopifyError):
    """The token works but lacks a scope (``ACCESS_DENIED``): the shop needs a reinstall."""

    def __init__(self, required_scopes: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.required_scopes = required_scopes


class ShopifyGraphQLError(ShopifyError):
    """Top-level GraphQL errors (validation, bad variables...): permanent, a bug on our side."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(error.get("message", error)) for error in errors)[:_DETAIL_MAX])
        self.errors = errors


class NotFound(ShopifyGraphQLError):
    """``RESOURCE_NOT_FOUND``: a GID of the wrong type or one Shopify does not know."""


class ShopifyHTTPError(ShopifyError):
    """Any other 4xx (402 frozen shop, 404 unknown shop, 423 locked shop): not retried here."""

    def __init__(self, http_status: int, body: str) -> None:
        super().__init__(f"HTTP {http_status} from Shopify: {body[:200]}")
        self.http_status = http_status


# One pooled session per process. A session inherited over fork() shares its sockets with the
# parent (Celery prefork), so a new one is built when the pid changes.
_session_lock = threading.Lock()
_session: requests.Session | None = None
_session_pid: int | None = None


def get_session() -> requests.Session:
    global _session, _session_pid
    if _session is None or _session_pid != os.getpid():
        with _session_lock:
            if _session is None or _session_pid != os.getpid():
                session = requests.Session()
                # Retries are ours (they depend on query vs mutation); urllib3 must not add any.
                adapter = HTTPAdapter(pool_connections=16, pool_maxsize=32, max_retries=0)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                _session = session
                _session_pid = os.getpid()
    return _session


def reset_session() -> None:
    """Drop the pooled session (tests; a worker after its settings changed)."""
    global _session, _session_pid
    with _session_lock:
        if _session is not None and _session_pid == os.getpid():
            _session.close()
        _session = None
        _session_pid = None


_OPERATION_RE = re.compile(r"\b(query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)")


@lru_cache(maxsize=256)
def operation_of(document: str) -> tuple[str, str]:
    """(operation type, operation name) of a document; anonymous documents get a placeholder."""
    match = _OPERATION_RE.search(document)
    if match:
        return match.group(1), match.group(2)
    return ("mutation" if document.lstrip().startswith("mutation") else "query"), "anonymous"


_SCOPE_RE = re.compile(r"\b((?:unauthenticated_)?(?:read|write)_[a-z_]+)\b")


def required_scopes_from(errors: list[dict[str, Any]]) -> tuple[str, ...]:
    """The scopes named in ACCESS_DENIED errors (message or extensions.requiredAccess)."""
    scopes: list[str] = []
    for error in errors:
        texts = [str(error.get("message") or "")]
        extensions = error.get("extensions") or {}
        if extensions.get("requiredAccess"):
            texts.append(str(extensions["requiredAccess"]))
        for text in texts:
            for scope in _SCOPE_RE.findall(text):
                if scope not in scopes:
                    scopes.append(scope)
    return tuple(scopes)


_NOT_SENT_ERRORS = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)


def _never_sent(exc: BaseException) -> bool:
    """True when the connection was never established, so Shopify cannot have seen the request."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        # NewConnectionError covers refused connections and DNS failures (NameResolutionError).
        if isinstance(current, _NOT_SENT_ERRORS):
            return True
        stack.append(getattr(current, "reason", None))
        stack.append(current.__cause__)
        stack.append(current.__context__)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return False


def _error_codes(errors: list[dict[str, Any]]) -> list[str]:
    return [str((error.get("extensions") or {}).get("code") or "") for error in errors]


def _user_errors_in(data: Any) -> list[dict[str, Any]]:
    """userErrors of the root fields of a mutation answer (one root field per document here)."""
    found: list[dict[str, Any]] = []
    if isinstance(data, dict):
        for value in data.values():
            if isinstance(value, dict) and isinstance(value.get("userErrors"), list):
                found.extend(value["userErrors"])
    return found


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text[:_DETAIL_MAX]


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # an HTTP date; Shopify sends seconds, so fall back to our own wait


class ShopifyClient:
    """Executes GraphQL documents for one shop. Cheap to create; the HTTP pool is per process."""

    def __init__(
        self,
        shop: Shop,
        *,
        on_call: Callable[[CallRecord], None] | None = None,
        before_mutation: Callable[[], None] | None = None,
        max_throttle_wait_s: float = DEFAULT_MAX_THROTTLE_WAIT_S,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.shop = shop
        self.on_call = on_call
        # Called before every mutation is sent (each retry included); it raises to stop the send.
        # The sync uses it to re-check its order lock: a fencing token guards Postgres writes,
        # but only a check right before the request keeps a holder that lost its lock off Shopify.
        self.before_mutation = before_mutation
        self.max_throttle_wait_s = max_throttle_wait_s
        # Injectable so tests can observe the waits without sleeping (and without wall-clock asserts).
        self._sleep = sleep
        self._rng = rng or random.Random()

    # -- public -------------------------------------------------------------------------------

    def execute(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a document and return its ``data``. userErrors are left in the data for the caller."""
        settings = get_settings()
        op_type, operation = operation_of(document)
        is_mutation = op_type == "mutation"
        body = {"query": document, "variables": variables or {}, "operationName": operation}
        headers = {
            "X-Shopify-Access-Token": self.shop.access_token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        timeout = (settings.shopify_connect_timeout_s, settings.shopify_read_timeout_s)
        failures = 0  # transient failures (5xx, timeouts, connection errors)
        throttles = 0
        throttle_waited = 0.0

        while True:
            if is_mutation and self.before_mutation is not None:
                self.before_mutation()
            started = time.monotonic()
            try:
                response = get_session().post(
                    self.shop.graphql_url, json=body, headers=headers, timeout=timeout
                )
            except requests.exceptions.Timeout as exc:
                sent = not _never_sent(exc)
                self._report(operation, "timeout", None, None, None, started, type(exc).__name__)
                if is_mutation and sent:
                    raise OutcomeUnknown(f"{operation}: read timeout after sending") from exc
                failures += 1
                self._backoff_or_raise(operation, failures, f"timeout ({type(exc).__name__})", exc)
                continue
            except requests.exceptions.ConnectionError as exc:
                sent = not _never_sent(exc)
                self._report(operation, "connection_error", None, None, None, started, _short(str(exc)))
                if is_mutation and sent:
                    raise OutcomeUnknown(f"{operation}: connection lost after sending") from exc
                failures += 1
                self._backoff_or_raise(operation, failures, "connection error", exc)
                continue

            status = response.status_code
            payload = self._json(response)
            extensions = (payload or {}).get("extensions") or {}
            cost = extensions.get("cost") or {} if isinstance(extensions, dict) else {}
            requested_cost = _int_or_none(cost.get("requestedQueryCost"))
            actual_cost = _int_or_none(cost.get("actualQueryCost"))

            # Binds this attempt's figures, so each branch below only says what happened.
            report = functools.partial(
                self._report_exchange, operation, status, requested_cost, actual_cost, started
            )

            if status == 429:
                wait = _retry_after(response)
                wait = _FALLBACK_THROTTLE_WAIT_S if wait is None else wait
                report("throttled", f"HTTP 429, Retry-After {wait:g}s")
                throttles, throttle_waited = self._throttle_wait(
                    operation, wait, throttles, throttle_waited, settings.shopify_max_attempts
                )
                continue
            if status in (401, 403):
                report("http_error", f"HTTP {status}")
                raise Unauthorized(status)
            if status >= 500 or payload is None:
                detail = f"HTTP {status}" + ("" if payload is not None else ", body is not JSON")
                report("http_error", detail)
                if is_mutation:
                    # A 5xx may come after Shopify applied the mutation (e.g. a gateway timeout).
                    raise OutcomeUnknown(f"{operation}: {detail}; outcome unknown")
                failures += 1
                self._backoff_or_raise(operation, failures, detail, None)
                continue
            if status >= 400:
                report("http_error", f"HTTP {status}: {_short(payload)}")
                raise ShopifyHTTPError(status, _short(payload))

            errors = payload.get("errors") if isinstance(payload, dict) else None
            if errors:
                if isinstance(errors, str | dict):
                    errors = [{"message": errors} if isinstance(errors, str) else errors]
                codes = _error_codes(errors)
                if "THROTTLED" in codes:
                    wait = self._throttle_wait_from_cost(cost)
                    report("throttled", f"THROTTLED, waiting {wait:.2f}s")
                    throttles, throttle_waited = self._throttle_wait(
                        operation, wait, throttles, throttle_waited, settings.shopify_max_attempts
                    )
                    continue
                if "ACCESS_DENIED" in codes:
                    scopes = required_scopes_from(errors)
                    report("access_denied", _short(errors))
                    raise AccessDenied(scopes, _short([error.get("message") for error in errors]))
                if "INTERNAL_SERVER_ERROR" in codes:
                    # Shopify's own failure inside an HTTP 200: transient, but may have half-run.
                    report("http_error", _short(errors))
                    if is_mutation:
                        raise OutcomeUnknown(f"{operation}: INTERNAL_SERVER_ERROR; outcome unknown")
                    failures += 1
                    self._backoff_or_raise(operation, failures, "INTERNAL_SERVER_ERROR", None)
                    continue
                report("graphql_error", _short(errors))
                if "RESOURCE_NOT_FOUND" in codes:
                    raise NotFound(errors)
                raise ShopifyGraphQLError(errors)

            data = payload.get("data") if isinstance(payload, dict) else None
            if not isinstance(data, dict):
                report("graphql_error", "no data in the response")
                raise ShopifyGraphQLError([{"message": "no data in the response"}])
            user_errors = _user_errors_in(data)
            if user_errors:
                report("user_errors", _short(user_errors))
            else:
                report("ok")
            return data

    # -- internals ----------------------------------------------------------------------------

    @staticmethod
    def _json(response: requests.Response) -> dict[str, Any] | None:
        try:
            payload = response.json()
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None

    @staticmethod
    def _throttle_wait_from_cost(cost: dict[str, Any]) -> float:
        """Seconds until the bucket holds the requested cost, from extensions.cost.throttleStatus."""
        status = cost.get("throttleStatus") or {}
        try:
            requested = float(cost.get("requestedQueryCost"))
            available = float(status.get("currentlyAvailable"))
            rate = float(status.get("restoreRate"))
        except (TypeError, ValueError):
            return _FALLBACK_THROTTLE_WAIT_S
        if rate <= 0:
            return _FALLBACK_THROTTLE_WAIT_S
        # Shopify said THROTTLED, so at least one restore tick is needed even if the numbers say 0
        # (another worker may have drained the bucket between the two).
        return max((requested - available) / rate, 1.0 / rate)

    def _throttle_wait(
        self, operation: str, wait: float, throttles: int, waited: float, max_attempts: int
    ) -> tuple[int, float]:
        throttles += 1
        if waited + wait > self.max_throttle_wait_s or throttles > max_attempts:
            log.info("shopify %s throttled; handing %.1fs back to the caller", operation, wait)
            raise Throttled(wait)
        log.debug("shopify %s throttled; sleeping %.2fs", operation, wait)
        self._sleep(wait)
        return throttles, waited + wait

    def _backoff_or_raise(
        self, operation: str, failures: int, reason: str, exc: BaseException | None
    ) -> None:
        settings = get_settings()
        if failures >= settings.shopify_max_attempts:
            raise ShopifyUnavailable(f"{operation}: {reason} after {failures} attempts") from exc
        # Full jitter (AWS architecture blog): spreads retries of many workers hit by one outage.
        ceiling = min(settings.shopify_backoff_cap_s, settings.shopify_backoff_base_s * 2 ** (failures - 1))
        delay = self._rng.uniform(0.0, ceiling)
        log.info("shopify %s: %s; retry %d in %.2fs", operation, reason, failures, delay)
        self._sleep(delay)

    def _report_exchange(
        self,
        operation: str,
        http_status: int,
        requested_cost: int | None,
        actual_cost: int | None,
        started: float,
        outcome: str,
        detail: str | None = None,
    ) -> None:
        self._report(operation, outcome, http_status, requested_cost, actual_cost, started, detail)

    def _report(
        self,
        operation: str,
        outcome: str,
        http_status: int | None,
        requested_cost: int | None,
        actual_cost: int | None,
        started: float,
        detail: str | None,
    ) -> None:
        record = CallRecord(
            operation=operation,
            outcome=outcome,
            http_status=http_status,
            requested_cost=requested_cost,
            actual_cost=actual_cost,
            duration_ms=int((time.monotonic() - started) * 1000),
            detail=detail,
        )
        log.debug("shopify %s %s: %s", self.shop.domain, operation, outcome)
        if self.on_call is None:
            return
        try:
            self.on_call(record)
        except Exception:
            # Recording is bookkeeping: losing a record must not turn a successful (possibly
            # non-idempotent) Shopify call into a failure the caller would retry.
            log.exception("recording a Shopify call failed (%s %s)", operation, outcome)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
