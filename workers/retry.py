"""The one retry policy: which errors come back, which are not failures at all, when to give up.

Shaped like Sentry's taskworker ``Retry``: a policy names the exceptions it ignores (not failures:
they come back later and never count), the ones that are permanent (no retry helps), and treats
everything else as a failed attempt, retried with exponential backoff and full jitter
(``delay(n) = uniform(0, min(cap, base * 2**(n-1)))``) until ``times`` attempts have failed. Full
jitter spreads the retries of many orders that failed together (a Shopify outage hits every order
of a shop at once), so they do not come back as one wave.

Two instances decide every retry of the sync:

- ``call_policy``: one HTTP call to Shopify inside a run (the client counts within the call);
- ``run_policy``: an apply run of an order, and the task around it. Its attempts are counted in
  Postgres (``returns.failures``), never by the broker, so a lost or duplicated message neither
  resets nor inflates them. When it gives up, the work is dead-lettered: the return and its open
  events become ``failed`` with the reason, and nothing is deleted (an operator replays it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from config import Settings
from workers.events import InvalidEvent
from workers.shopify.errors import (
    AccessDenied,
    OutcomeUnknown,
    ShopifyGraphQLError,
    ShopifyHTTPError,
    Throttled,
    Unauthorized,
)
from workers.store.db import DatabaseUnavailable
from workers.store.fencing import LostLock


class Verdict(StrEnum):
    RETRY = "retry"  # a failed attempt: counted, tried again after ``delay_s``
    WAIT = "wait"  # not a failure (the budget, a busy lock, Postgres away): again later, never counted
    GIVE_UP = "give_up"  # permanent, or out of attempts: the caller stops (a run dead-letters)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay_s: float = 0.0
    attempt: int = 0  # the failed attempt this is about (0 for WAIT)
    reason: str = ""  # "<exception class>: <message>"


class OrderBusy(Exception):
    """Another worker holds the order (or the same Shopify order under another row)."""

    retry_after_s: float | None = None


def describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _hint(exc: BaseException) -> float | None:
    """The wait an exception asks for itself (Shopify's Retry-After / throttleStatus)."""
    value = getattr(exc, "retry_after_s", None)
    return float(value) if isinstance(value, int | float) and value >= 0 else None


@dataclass(frozen=True)
class RetryPolicy:
    times: int  # attempts in all, the first one included
    base_s: float
    cap_s: float
    ignore: tuple[type[BaseException], ...] = field(default=())
    permanent: tuple[type[BaseException], ...] = field(default=())

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay after failed attempt ``attempt`` (counting from 1)."""
        exponent = max(0, attempt - 1)
        # Cap the exponent too: 2**1000 is a float overflow long before the cap would bite.
        return min(self.cap_s, self.base_s * (2 ** min(exponent, 62)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: anywhere between 0 and the exponential ceiling."""
        return (rng or random).uniform(0.0, self.ceiling(attempt))

    def decide(self, exc: BaseException, attempt: int, rng: random.Random | None = None) -> Decision:
        """What to do after ``exc``; ``attempt`` is the number of failed attempts including this
        one (ignored for errors that are not failures)."""
        reason = describe(exc)
        if isinstance(exc, self.ignore):
            hint = _hint(exc)
            return Decision(Verdict.WAIT, self.ceiling(1) if hint is None else hint, 0, reason)
        if isinstance(exc, self.permanent) or attempt >= self.times:
            return Decision(Verdict.GIVE_UP, 0.0, attempt, reason)
        return Decision(Verdict.RETRY, self.delay(attempt, rng), attempt, reason)

    def dead_letter_detail(self, decision: Decision) -> str:
        if decision.attempt >= self.times:
            return f"gave up after {decision.attempt} attempts: {decision.reason} (replay to try again)"
        return f"failed: {decision.reason} (replay to try again)"

    def retry_detail(self, decision: Decision) -> str:
        return f"{decision.reason}; retry {decision.attempt} of {self.times - 1} in {decision.delay_s:.0f}s"


def call_policy(settings: Settings) -> RetryPolicy:
    """One HTTP call to Shopify inside a run: a few quick retries of transient trouble.

    Permanent at this level: anything Shopify answered for good (auth, scopes, GraphQL errors,
    other 4xx) and a mutation whose outcome is unknown: re-sending a create could duplicate it,
    so the run re-reads Shopify instead. Throttling is the shop's budget, waited for as told.
    """
    return RetryPolicy(
        times=settings.shopify_max_attempts,
        base_s=settings.shopify_backoff_base_s,
        cap_s=settings.shopify_backoff_cap_s,
        ignore=(Throttled,),
        permanent=(OutcomeUnknown, Unauthorized, AccessDenied, ShopifyGraphQLError, ShopifyHTTPError),
    )


def run_policy(settings: Settings) -> RetryPolicy:
    """An apply run of an order (and the task around it), counted per return in Postgres.

    Each Shopify call already retried itself within the run, so a run that still fails means an
    outage of minutes: the run-level backoff starts at a few seconds, caps at 10 minutes and gives
    up after ``apply_max_attempts`` runs (about an hour by default). Not failures: the shop's budget,
    a busy or lost lock, Postgres unreachable (nothing can be counted then, and it is not the
    order's fault). Permanent: an event that no longer validates, a document Shopify rejects.
    Everything else, an unexpected exception included, is a failed attempt.
    """
    return RetryPolicy(
        times=settings.apply_max_attempts,
        base_s=settings.apply_backoff_base_s,
        cap_s=settings.apply_backoff_cap_s,
        ignore=(Throttled, OrderBusy, LostLock, *DatabaseUnavailable),
        permanent=(InvalidEvent, ShopifyGraphQLError),
    )


__all__ = [
    "Decision",
    "OrderBusy",
    "RetryPolicy",
    "Verdict",
    "call_policy",
    "describe",
    "run_policy",
]
