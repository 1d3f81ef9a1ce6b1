"""The one retry policy: what retries, what is not a failure, when it gives up, and the backoff."""

from __future__ import annotations

import random

import psycopg2
from hypothesis import given
from hypothesis import strategies as st

from config import Settings
from workers.events import InvalidEvent
from workers.retry import OrderBusy, RetryPolicy, Verdict, call_policy, run_policy
from workers.shopify.errors import (
    OutcomeUnknown,
    ShopifyGraphQLError,
    ShopifyUnavailable,
    Throttled,
    TransientError,
    Unauthorized,
)
from workers.store.fencing import LostLock

POLICY = RetryPolicy(times=5, base_s=2.0, cap_s=60.0)
SETTINGS = Settings(shopify_backoff_base_s=0.5, shopify_backoff_cap_s=30.0, shopify_max_attempts=6)


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


def test_an_unexpected_exception_is_retried_until_the_last_attempt_then_given_up():
    verdicts = [POLICY.decide(ValueError("year -1 is out of range"), n).verdict for n in range(1, 7)]
    assert verdicts == [Verdict.RETRY] * 4 + [Verdict.GIVE_UP] * 2
    final = POLICY.decide(ValueError("year -1 is out of range"), 5)
    assert POLICY.dead_letter_detail(final) == (
        "gave up after 5 attempts: ValueError: year -1 is out of range (replay to try again)"
    )
    retry = POLICY.decide(ValueError("boom"), 2, random.Random(1))
    assert 0 <= retry.delay_s <= POLICY.ceiling(2)
    assert POLICY.retry_detail(retry).startswith("ValueError: boom; retry 2 of 4 in ")


def test_the_call_policy_retries_transient_trouble_and_never_resends_an_unknown_mutation():
    policy = call_policy(SETTINGS)
    assert policy.times == 6 and (policy.base_s, policy.cap_s) == (0.5, 30.0)
    assert policy.decide(TransientError("HTTP 503"), 1).verdict is Verdict.RETRY
    assert policy.decide(TransientError("HTTP 503"), 6).verdict is Verdict.GIVE_UP
    for permanent in (OutcomeUnknown("returnCreate: timeout"), Unauthorized(401), ShopifyGraphQLError([])):
        assert policy.decide(permanent, 1).verdict is Verdict.GIVE_UP
    # Throttling is not a failure: wait as long as Shopify says, whatever the count.
    waited = policy.decide(Throttled(2.5), 99)
    assert (waited.verdict, waited.delay_s) == (Verdict.WAIT, 2.5)


def test_the_run_policy_never_counts_the_budget_a_busy_lock_or_postgres_being_away():
    policy = run_policy(Settings(apply_max_attempts=10, apply_backoff_base_s=5.0, apply_backoff_cap_s=600.0))
    for not_a_failure in (
        Throttled(4.0),
        OrderBusy("locked"),
        LostLock("fence"),
        psycopg2.OperationalError(),
    ):
        assert policy.decide(not_a_failure, 50).verdict is Verdict.WAIT
    assert policy.decide(Throttled(4.0), 1).delay_s == 4.0
    # Shopify down, or anything unexpected: failed attempts, ten of them.
    assert policy.decide(ShopifyUnavailable("HTTP 503 after 6 attempts"), 9).verdict is Verdict.RETRY
    assert policy.decide(RuntimeError("bug"), 10).verdict is Verdict.GIVE_UP
    # What no retry can fix gives up at once.
    assert policy.decide(InvalidEvent({"occurred_at": ["bad"]}), 1).verdict is Verdict.GIVE_UP
    # Every single countdown fits well inside the broker's visibility timeout (1 hour minimum).
    assert policy.cap_s < 3600
