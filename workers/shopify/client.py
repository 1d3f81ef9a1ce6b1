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
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from config import get_settings
from workers import metrics
from workers.retry import RetryPolicy, Verdict, call_policy
from workers.shopify.errors import (
    AccessDenied,
    CostTooHigh,
    NotFound,
    OutcomeUnknown,
    ShopifyError,
    ShopifyGraphQLError,
    ShopifyHTTPError,
    ShopifyUnavailable,
    Throttled,
    TransientError,
    Unauthorized,
)
from workers.statuses import CallOutcome
from workers.store.calls import CallRecord

__all__ = [
    "AccessDenied",
    "CallRecord",
    "CostTooHigh",
    "Meter",
    "Endpoint",
    "NotFound",
    "OutcomeUnknown",
    "ShopifyClient",
    "ShopifyError",
    "ShopifyGraphQLError",
    "ShopifyHTTPError",
    "ShopifyUnavailable",
    "StaticToken",
    "Throttled",
    "TokenSource",
    "Unauthorized",
]

log = logging.getLogger(__name__)

# A throttle wait longer than this (summed over one execute call) is handed back to the caller:
# a worker should not sleep for half a minute holding an order's lock.
DEFAULT_MAX_THROTTLE_WAIT_S = 30.0
# The wait when a throttled answer carries no usable figures (no Retry-After, no throttleStatus):
# one second is what Shopify's REST limiter sends and refills any plan's bucket noticeably.
_FALLBACK_THROTTLE_WAIT_S = 1.0
_DETAIL_MAX = 2000

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
                # Proxies come from settings, not from the environment: with trust_env requests reads
                # the proxy variables (and NO_PROXY) and looks for ~/.netrc on every request,
                # about 4 % of a busy worker's CPU.
                session.trust_env = False
                proxy = get_settings().shopify_proxy_url
                if proxy:
                    session.proxies = {"https": proxy, "http": proxy}
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


class TokenSource(Protocol):
    """Where the client gets the token for each request (``workers.access.ShopTokens``)."""

    def current(self) -> str:
        """The token to send now; never one known to be expired."""
        ...

    def after_unauthorized(self, rejected: str) -> str:
        """Shopify answered 401 to ``rejected``: the token to try once more, or raise."""
        ...


class Meter(Protocol):
    """The shop's shared API budget as the client sees it (``workers.budget.BudgetGate``)."""

    def take(self, key: str, operation: str, fallback: float) -> float:
        """Reserve a request's expected cost (waiting briefly), or raise ``Throttled`` /
        ``CostTooHigh``; returns what was taken."""
        ...

    def settle(self, key: str, taken: float, cost: dict[str, Any] | None, *, throttled: bool = False) -> None:
        """An answer came back with these ``extensions.cost`` figures."""
        ...

    def give_back(self, taken: float) -> None:
        """The request was certainly not executed."""
        ...


# Until an answer teaches the real figure (workers.budget.CostBook): a mutation root field costs
# 10 on Shopify; a query's cost depends on its pages, so a middling guess.
_FALLBACK_MUTATION_COST = 10.0
_FALLBACK_QUERY_COST = 50.0


def cost_key(operation: str, variables: dict[str, Any]) -> str:
    """What a request's requested cost depends on: the document (named by its operation) and the
    page sizes among its variables."""
    sizes = sorted((k, v) for k, v in variables.items() if isinstance(v, int) and not isinstance(v, bool))
    return operation + "".join(f" {k}={v}" for k, v in sizes)


@dataclass(frozen=True)
class StaticToken:
    """A token that is what it is: a 401 is final."""

    token: str = field(repr=False)

    def current(self) -> str:
        return self.token

    def after_unauthorized(self, rejected: str) -> str:
        raise Unauthorized(401)


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom to call one shop's Admin API (the token never shows in a repr)."""

    shop_domain: str
    url: str
    tokens: TokenSource = field(repr=False)


class ShopifyClient:
    """Executes GraphQL documents for one shop. Cheap to create; the HTTP pool is per process.

    Every retry inside a call is decided by ``policy`` (``workers.retry.call_policy``): a
    ``TransientError`` of one exchange is retried with its backoff, throttling is waited out as
    Shopify asks up to ``max_throttle_wait_s`` per call and then handed back as ``Throttled``, and
    whatever the policy calls permanent goes straight to the caller.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        policy: RetryPolicy | None = None,
        on_call: Callable[[CallRecord], None] | None = None,
        before_send: Callable[[bool], None] | None = None,
        meter: Meter | None = None,
        max_throttle_wait_s: float = DEFAULT_MAX_THROTTLE_WAIT_S,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.policy = policy or call_policy(get_settings())
        self.on_call = on_call
        # Called before every request is sent (each retry included) with whether it is a mutation;
        # it raises to stop the send. The sync renews its order lease there: a fencing token
        # guards Postgres writes, but only a check right before the request keeps a holder that
        # lost its lease off Shopify.
        self.before_send = before_send
        # The shop's shared budget: each request's cost is taken before it is sent, so workers of
        # one shop never send what Shopify would answer THROTTLED.
        self.meter = meter
        self.max_throttle_wait_s = max_throttle_wait_s
        # Mutations whose outcome this client could not learn (the caller's view of Shopify is
        # uncertain from then on).
        self.unknown_outcomes = 0
        # Injectable so tests can observe the waits without sleeping (and without wall-clock asserts).
        self._sleep = sleep
        self._rng = rng or random.Random()

    # -- public -------------------------------------------------------------------------------

    def execute(self, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a document and return its ``data``. userErrors are left in the data for the caller."""
        try:
            return self._execute(document, variables)
        except OutcomeUnknown:
            self.unknown_outcomes += 1
            raise

    def _execute(self, document: str, variables: dict[str, Any] | None) -> dict[str, Any]:
        op_type, operation = operation_of(document)
        is_mutation = op_type == "mutation"
        variables = variables or {}
        body = {"query": document, "variables": variables, "operationName": operation}
        key = cost_key(operation, variables)
        fallback = (
            _FALLBACK_MUTATION_COST * document.count("userErrors") if is_mutation else _FALLBACK_QUERY_COST
        )
        failures = 0  # transient failures (5xx, timeouts, connection errors)
        throttles = 0
        throttle_waited = 0.0
        while True:
            if self.before_send is not None:
                self.before_send(is_mutation)
            # Outside the try: waiting longer than is worth it, or never fitting, is the caller's.
            taken = self.meter.take(key, operation, max(fallback, 1.0)) if self.meter else 0.0
            try:
                return self._exchange(operation, is_mutation, body, _Charge(key, taken))
            except ShopifyError as exc:
                throttled = isinstance(exc, Throttled)
                failures += 0 if throttled else 1
                decision = self.policy.decide(exc, failures, self._rng)
                if decision.verdict is Verdict.GIVE_UP:
                    if isinstance(exc, TransientError):
                        raise ShopifyUnavailable(f"{operation}: {exc} after {failures} attempts") from exc
                    raise
                if throttled:
                    metrics.throttle_wait(self.endpoint.shop_domain)
                    throttles += 1
                    if (
                        throttle_waited + decision.delay_s > self.max_throttle_wait_s
                        or throttles > self.policy.times
                    ):
                        log.info(
                            "shopify %s throttled; handing %.1fs back to the caller",
                            operation,
                            decision.delay_s,
                        )
                        raise Throttled(decision.delay_s) from None
                    throttle_waited += decision.delay_s
                else:
                    log.info("shopify %s: %s; retry %d in %.2fs", operation, exc, failures, decision.delay_s)
                self._sleep(decision.delay_s)

    # -- one exchange -------------------------------------------------------------------------

    def _exchange(
        self, operation: str, is_mutation: bool, body: dict[str, Any], charge: _Charge
    ) -> dict[str, Any]:
        """One request, sent again once with a refreshed token after a 401 (Shopify did not act
        on it, so even a mutation is safe to resend, on the same reserved cost)."""
        token = self.endpoint.tokens.current()
        try:
            try:
                return self._send(operation, is_mutation, body, token, charge)
            except Unauthorized as exc:
                # 401: the token expired or was replaced; 403 (a non-expiring token past its
                # cutoff, APP-AUTH.md §5) is not helped by a refresh.
                if exc.http_status != 401:
                    raise
                retry_with = self.endpoint.tokens.after_unauthorized(token)
                return self._send(operation, is_mutation, body, retry_with, charge)
        except BaseException as exc:
            self._unspent(charge, exc)
            raise

    def _unspent(self, charge: _Charge, exc: BaseException) -> None:
        """A request that ended without an answer carrying cost figures: hand its reserved cost
        back when Shopify certainly did not execute it; otherwise settle it without figures (the
        meter charges what such a request usually costs)."""
        if self.meter is None or charge.settled:
            return
        charge.settled = True
        if isinstance(exc, Unauthorized | Throttled) or getattr(exc, "never_sent", False):
            self.meter.give_back(charge.taken)
        else:
            self.meter.settle(charge.key, charge.taken, None)

    def _settle(self, charge: _Charge, cost: dict[str, Any], *, throttled: bool = False) -> None:
        if self.meter is not None:
            charge.settled = True
            self.meter.settle(charge.key, charge.taken, cost, throttled=throttled)

    def _send(
        self, operation: str, is_mutation: bool, body: dict[str, Any], token: str, charge: _Charge
    ) -> dict[str, Any]:
        """One HTTP request and its classification: data, or the ShopifyError it amounts to."""
        settings = get_settings()
        headers = {
            "X-Shopify-Access-Token": token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        timeout = (settings.shopify_connect_timeout_s, settings.shopify_read_timeout_s)
        started = time.monotonic()
        try:
            response = get_session().post(self.endpoint.url, json=body, headers=headers, timeout=timeout)
        except requests.exceptions.Timeout as exc:
            self._report(operation, CallOutcome.TIMEOUT, None, None, None, started, type(exc).__name__)
            never_sent = _never_sent(exc)
            if is_mutation and not never_sent:
                raise OutcomeUnknown(f"{operation}: read timeout after sending") from exc
            raise TransientError(f"timeout ({type(exc).__name__})", never_sent=never_sent) from exc
        except requests.exceptions.ConnectionError as exc:
            self._report(operation, CallOutcome.CONNECTION_ERROR, None, None, None, started, _short(str(exc)))
            never_sent = _never_sent(exc)
            if is_mutation and not never_sent:
                raise OutcomeUnknown(f"{operation}: connection lost after sending") from exc
            raise TransientError("connection error", never_sent=never_sent) from exc

        status = response.status_code
        payload = self._json(response)
        extensions = (payload or {}).get("extensions") or {}
        cost = (extensions.get("cost") or {}) if isinstance(extensions, dict) else {}
        if not isinstance(cost, dict):
            cost = {}
        if cost:
            errors_ = (payload or {}).get("errors")
            throttled = "THROTTLED" in _error_codes(errors_ if isinstance(errors_, list) else [])
            self._settle(charge, cost, throttled=throttled)
        # Binds this exchange's figures, so each branch below only says what happened.
        report = functools.partial(
            self._report_exchange,
            operation,
            status,
            _int_or_none(cost.get("requestedQueryCost")),
            _int_or_none(cost.get("actualQueryCost")),
            started,
        )

        if status == 429:
            wait = _retry_after(response)
            wait = _FALLBACK_THROTTLE_WAIT_S if wait is None else wait
            report(CallOutcome.THROTTLED, f"HTTP 429, Retry-After {wait:g}s")
            raise Throttled(wait)
        if status in (401, 403):
            report(CallOutcome.HTTP_ERROR, f"HTTP {status}")
            raise Unauthorized(status)
        if status >= 500 or payload is None:
            detail = f"HTTP {status}" + ("" if payload is not None else ", body is not JSON")
            report(CallOutcome.HTTP_ERROR, detail)
            if is_mutation:
                # A 5xx may come after Shopify applied the mutation (e.g. a gateway timeout).
                raise OutcomeUnknown(f"{operation}: {detail}; outcome unknown")
            raise TransientError(detail)
        if status >= 400:
            report(CallOutcome.HTTP_ERROR, f"HTTP {status}: {_short(payload)}")
            raise ShopifyHTTPError(status, _short(payload))

        errors = payload.get("errors")
        if errors:
            if isinstance(errors, str | dict):
                errors = [{"message": errors} if isinstance(errors, str) else errors]
            codes = _error_codes(errors)
            if "MAX_COST_EXCEEDED" in codes:
                report(CallOutcome.GRAPHQL_ERROR, _short(errors))
                raise CostTooHigh(operation, *_max_cost_figures(errors, cost))
            if "THROTTLED" in codes:
                wait = self._throttle_wait_from_cost(cost)
                report(CallOutcome.THROTTLED, f"THROTTLED, waiting {wait:.2f}s")
                raise Throttled(wait)
            if "ACCESS_DENIED" in codes:
                report(CallOutcome.ACCESS_DENIED, _short(errors))
                raise AccessDenied(
                    required_scopes_from(errors), _short([error.get("message") for error in errors])
                )
            if "INTERNAL_SERVER_ERROR" in codes:
                # Shopify's own failure inside an HTTP 200: transient, but may have half-run.
                report(CallOutcome.HTTP_ERROR, _short(errors))
                if is_mutation:
                    raise OutcomeUnknown(f"{operation}: INTERNAL_SERVER_ERROR; outcome unknown")
                raise TransientError("INTERNAL_SERVER_ERROR")
            report(CallOutcome.GRAPHQL_ERROR, _short(errors))
            if "RESOURCE_NOT_FOUND" in codes:
                raise NotFound(errors)
            raise ShopifyGraphQLError(errors)

        data = payload.get("data")
        if not isinstance(data, dict):
            report(CallOutcome.GRAPHQL_ERROR, "no data in the response")
            raise ShopifyGraphQLError([{"message": "no data in the response"}])
        user_errors = _user_errors_in(data)
        if user_errors:
            report(CallOutcome.USER_ERRORS, _short(user_errors))
        else:
            report(CallOutcome.OK)
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
            requested = float(cost["requestedQueryCost"])
            available = float(status["currentlyAvailable"])
            rate = float(status["restoreRate"])
        except (KeyError, TypeError, ValueError):
            return _FALLBACK_THROTTLE_WAIT_S
        if rate <= 0:
            return _FALLBACK_THROTTLE_WAIT_S
        # Shopify said THROTTLED, so at least one restore tick is needed even if the numbers say 0
        # (another worker may have drained the bucket between the two).
        return max((requested - available) / rate, 1.0 / rate)

    def _report_exchange(
        self,
        operation: str,
        http_status: int,
        requested_cost: int | None,
        actual_cost: int | None,
        started: float,
        outcome: CallOutcome,
        detail: str | None = None,
    ) -> None:
        self._report(operation, outcome, http_status, requested_cost, actual_cost, started, detail)

    def _report(
        self,
        operation: str,
        outcome: CallOutcome,
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
        log.debug("shopify %s %s: %s", self.endpoint.shop_domain, operation, outcome)
        metrics.shopify_call(self.endpoint.shop_domain, operation, outcome, time.monotonic() - started)
        if self.on_call is None:
            return
        try:
            self.on_call(record)
        except Exception:
            # Recording is bookkeeping: losing a record must not turn a successful (possibly
            # non-idempotent) Shopify call into a failure the caller would retry.
            log.exception("recording a Shopify call failed (%s %s)", operation, outcome)


@dataclass
class _Charge:
    """The budget reserved for one request (and its 401 resend), settled once."""

    key: str
    taken: float
    settled: bool = False


# Shopify refuses any single query above this many requested points (MAX_COST_EXCEEDED).
_MAX_QUERY_COST = 1000.0


def _max_cost_figures(errors: list[dict[str, Any]], cost: dict[str, Any]) -> tuple[float, float]:
    """(requested cost, limit) of a MAX_COST_EXCEEDED answer."""
    for error in errors:
        extensions = error.get("extensions") or {}
        if extensions.get("code") == "MAX_COST_EXCEEDED":
            requested, limit = extensions.get("cost"), extensions.get("maxCost")
            return (
                float(requested) if isinstance(requested, int | float) else _MAX_QUERY_COST + 1,
                float(limit) if isinstance(limit, int | float) else _MAX_QUERY_COST,
            )
    figure = cost.get("requestedQueryCost")
    return (float(figure) if isinstance(figure, int | float) else _MAX_QUERY_COST + 1, _MAX_QUERY_COST)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None
