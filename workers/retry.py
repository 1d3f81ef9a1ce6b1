"""One retry policy for the whole sync: exponential backoff with full jitter, then a dead letter.

Shaped like Sentry's and AWS's: ``delay(n) = uniform(0, min(cap, base * 2**(n-1)))``. Full jitter
spreads the retries of many orders that failed together (a Shopify outage hits every order of a
shop at once), so they do not come back as one wave and trip the rate limit again.

When ``should_retry`` says no, the work is dead-lettered: the events get the final status
``failed`` with a detail that says what failed and how often. Nothing is deleted, so an operator
can replay it (``returns.replay``) once the cause is fixed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from config import Settings


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float
    cap_s: float
    max_attempts: int

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before attempt ``attempt + 1`` (attempt counts from 1)."""
        exponent = max(0, attempt - 1)
        # Cap the exponent too: 2**1000 is a float overflow long before the cap would bite.
        return min(self.cap_s, self.base_s * (2 ** min(exponent, 62)))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter: anywhere between 0 and the exponential ceiling."""
        return (rng or random).uniform(0.0, self.ceiling(attempt))

    def should_retry(self, attempt: int) -> bool:
        """After ``attempt`` failed attempts, is another one allowed?"""
        return attempt < self.max_attempts

    def dead_letter_detail(self, attempt: int, reason: str) -> str:
        return f"gave up after {attempt} attempts: {reason} (replay to try again)"


def apply_policy(settings: Settings) -> RetryPolicy:
    """Retries of a whole apply run (a task) after Shopify was unreachable.

    Each Shopify call already retries itself ``shopify_max_attempts`` times within one run, so a
    run that still fails means an outage of minutes, not seconds: the run-level policy starts
    from a few seconds and caps at 10 minutes, and gives up after 10 runs (~1 hour in total),
    well inside the broker's visibility timeout for each single countdown.
    """
    return RetryPolicy(
        base_s=max(1.0, settings.shopify_backoff_base_s * 10),
        cap_s=600.0,
        max_attempts=10,
    )


def call_policy(settings: Settings) -> RetryPolicy:
    """Retries of one HTTP call to Shopify inside a run (for the Shopify client)."""
    return RetryPolicy(
        base_s=settings.shopify_backoff_base_s,
        cap_s=settings.shopify_backoff_cap_s,
        max_attempts=settings.shopify_max_attempts,
    )
