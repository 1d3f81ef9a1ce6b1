"""The retry policy: full-jitter exponential backoff, a bounded number of attempts, dead letters."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from config import Settings
from workers.retry import RetryPolicy, apply_policy, call_policy

POLICY = RetryPolicy(base_s=2.0, cap_s=60.0, max_attempts=5)


def test_ceiling_doubles_from_the_base_up_to_the_cap():
    assert [POLICY.ceiling(n) for n in range(1, 8)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


@given(attempt=st.integers(min_value=1, max_value=10_000), seed=st.integers())
def test_delay_is_always_between_zero_and_the_ceiling(attempt, seed):
    delay = POLICY.delay(attempt, random.Random(seed))
    assert 0.0 <= delay <= POLICY.ceiling(attempt) <= POLICY.cap_s


def test_full_jitter_spreads_delays_over_the_whole_range():
    rng = random.Random(7)
    delays = [POLICY.delay(4, rng) for _ in range(500)]
    # Not clustered at the ceiling (that would be "equal jitter" or none): both halves are used.
    assert min(delays) < POLICY.ceiling(4) / 4 and max(delays) > POLICY.ceiling(4) * 3 / 4


def test_retries_stop_at_max_attempts_with_a_replayable_dead_letter():
    assert [POLICY.should_retry(n) for n in range(1, 7)] == [True, True, True, True, False, False]
    detail = POLICY.dead_letter_detail(5, "Shopify unavailable: HTTP 503")
    assert detail == "gave up after 5 attempts: Shopify unavailable: HTTP 503 (replay to try again)"


def test_policies_follow_the_settings():
    settings = Settings(shopify_backoff_base_s=0.5, shopify_backoff_cap_s=30.0, shopify_max_attempts=6)
    assert call_policy(settings) == RetryPolicy(0.5, 30.0, 6)
    run = apply_policy(settings)
    assert run.max_attempts == 10 and run.base_s == 5.0
    # Every single countdown fits well inside the broker's visibility timeout (1 hour minimum).
    assert run.cap_s < 3600
