"""A per-shop mirror of Shopify's API cost budget, shared by every worker through Redis.

Shopify limits each shop (an app's bucket per store) with a leaky bucket of cost points: it holds
up to ``maximumAvailable``, refills at ``restoreRate`` points/s, and a request is only executed if
its *requested* cost is available; that cost is charged up front and the difference to the
*actual* cost is refunded afterwards. Workers that each learn the bucket from THROTTLED answers
wake together and are throttled together, so every worker instead takes a request's cost from
this mirror *before* sending it and waits for ``wait_s`` when it does not fit.

Design:

- One Redis hash per shop (``maximum``, ``available``, ``restore_rate``, ``updated_at``); every
  operation is one Lua script, so a take is atomic across processes and machines, and the clock is
  Redis's own (``TIME``), so machines with skewed clocks agree on the refill. The key expires
  after an idle period (never before the bucket would be full again), and a missing key is a full
  bucket at the caller's defaults, so losing Redis costs a few THROTTLED answers, nothing more.
- ``settle`` after each response refunds ``requested - actual`` and then takes Shopify's
  ``maximumAvailable`` and ``restoreRate`` as the truth, but corrects ``available`` only
  *downwards* (``min(mirror, currentlyAvailable)``): Shopify's figure was measured when our
  request finished and does not yet include the other workers' requests still in flight, which
  the mirror has already taken. Raising the mirror to Shopify's figure would hand those points out
  twice; upward corrections come from refunds and the refill, which also heal a cost that was
  taken and never settled (a worker killed mid-request) within ``cost / restore_rate`` seconds.
- A THROTTLED answer was not executed and charged nothing, so its whole taken cost is given back
  and the mirror is then brought down to Shopify's figure: the next take waits as Shopify would.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from config import get_settings
from workers import metrics
from workers.redis_state import get_redis
from workers.shopify.errors import CostTooHigh, Throttled

log = logging.getLogger(__name__)

# Idle shops vanish after this; long enough that the maximum and restore rate learned from Shopify
# survive a quiet night, since a missing key falls back to the (possibly smaller) defaults.
DEFAULT_IDLE_TTL_S = 86400.0

# Lua numbers returned to redis-py are truncated to integers, so every figure travels as a string
# ('%.17g' round-trips a double). "Never fits" is sent as -1: Lua's 'inf' is not portable.
_PRELUDE = """
local function fmt(x) return string.format('%.17g', x) end

local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function load(key, now, default_max, default_rate)
  local h = redis.call('HMGET', key, 'maximum', 'available', 'restore_rate', 'updated_at')
  local maximum = tonumber(h[1]) or default_max
  local available = tonumber(h[2]) or maximum
  local rate = tonumber(h[3]) or default_rate
  local updated = tonumber(h[4]) or now
  -- A clock that stepped back (a failover to another Redis) refills nothing rather than draining.
  local elapsed = now - updated
  if elapsed > 0 then available = math.min(maximum, available + elapsed * rate) end
  return maximum, available, rate
end

local function save(key, maximum, available, rate, now, idle_ttl_ms)
  redis.call('HSET', key, 'maximum', fmt(maximum), 'available', fmt(available),
             'restore_rate', fmt(rate), 'updated_at', fmt(now))
  -- Expiring before the bucket is full again would turn a drained bucket into a full one.
  local ttl = idle_ttl_ms
  if rate > 0 then
    local refill_ms = math.ceil((maximum - available) / rate * 1000) + 1000
    if refill_ms > ttl then ttl = refill_ms end
  end
  redis.call('PEXPIRE', key, ttl)
end
"""

# KEYS[1] = shop key; ARGV = cost, default_max, default_rate, idle_ttl_ms
_TAKE = (
    _PRELUDE
    + """
local now = now_s()
local maximum, available, rate = load(KEYS[1], now, tonumber(ARGV[2]), tonumber(ARGV[3]))
local cost = tonumber(ARGV[1])
local granted, wait = 0, -1
if cost <= available then
  available = available - cost
  granted, wait = 1, 0
elseif cost <= maximum and rate > 0 then
  wait = (cost - available) / rate
end
save(KEYS[1], maximum, available, rate, now, tonumber(ARGV[4]))
return {granted, fmt(wait), fmt(maximum), fmt(available), fmt(rate)}
"""
)

# ARGV = requested, actual|'', status max|'', status available|'', status rate|'', throttled 0|1,
#        default_max, default_rate, idle_ttl_ms
_SETTLE = (
    _PRELUDE
    + """
local now = now_s()
local maximum, available, rate = load(KEYS[1], now, tonumber(ARGV[7]), tonumber(ARGV[8]))
local requested = tonumber(ARGV[1])
local actual = tonumber(ARGV[2])
local s_max, s_available, s_rate = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if ARGV[6] == '1' then
  available = available + requested
elseif actual and actual < requested then
  available = available + (requested - actual)
end
if s_max then maximum = s_max end
if s_rate then rate = s_rate end
if s_available and s_available < available then available = s_available end
available = math.min(maximum, available)
save(KEYS[1], maximum, available, rate, now, tonumber(ARGV[9]))
return {fmt(maximum), fmt(available), fmt(rate)}
"""
)

# ARGV = cost, default_max, default_rate, idle_ttl_ms
_GIVE_BACK = (
    _PRELUDE
    + """
local now = now_s()
local maximum, available, rate = load(KEYS[1], now, tonumber(ARGV[2]), tonumber(ARGV[3]))
available = math.min(maximum, available + tonumber(ARGV[1]))
save(KEYS[1], maximum, available, rate, now, tonumber(ARGV[4]))
return {fmt(maximum), fmt(available), fmt(rate)}
"""
)

# ARGV = default_max, default_rate. Reads only: looking must not keep an idle shop alive.
_STATE = (
    _PRELUDE
    + """
local maximum, available, rate = load(KEYS[1], now_s(), tonumber(ARGV[1]), tonumber(ARGV[2]))
return {fmt(maximum), fmt(available), fmt(rate)}
"""
)


@dataclass(frozen=True)
class BudgetState:
    maximum: float
    available: float
    restore_rate: float


@dataclass(frozen=True)
class Grant:
    """The answer of ``take``: ``wait_s`` is 0.0 when granted, ``math.inf`` when the cost can never
    fit (above the maximum, or no refill), else the seconds until it fits if nobody else takes."""

    granted: bool
    wait_s: float
    state: BudgetState


class ShopBudget:
    """The shared cost budget of one shop. Cheap to build (no Redis call); safe to share between
    threads (each operation is one atomic script)."""

    def __init__(
        self,
        redis: Redis,
        shop: str,
        *,
        default_maximum: float = 1000.0,
        default_restore_rate: float = 50.0,
        key_prefix: str = "returnsync:budget:",
        idle_ttl_s: float = DEFAULT_IDLE_TTL_S,
    ) -> None:
        if not _finite(default_maximum) or default_maximum <= 0:
            raise ValueError(f"default_maximum must be a positive number, not {default_maximum!r}")
        self.shop = shop
        self.key = f"{key_prefix}{shop}"
        self._default_maximum = float(default_maximum)
        self._default_restore_rate = _amount("default_restore_rate", default_restore_rate)
        self._ttl_ms = str(max(1, math.ceil(_amount("idle_ttl_s", idle_ttl_s) * 1000)))
        self._take = redis.register_script(_TAKE)
        self._settle = redis.register_script(_SETTLE)
        self._give_back = redis.register_script(_GIVE_BACK)
        self._state = redis.register_script(_STATE)

    def take(self, cost: float) -> Grant:
        """Refill, then take ``cost`` if it fits, else take nothing and say how long to wait."""
        cost = _amount("cost", cost)
        granted, wait, *figures = self._take(keys=[self.key], args=[repr(cost), *self._default_args()])
        wait_s = float(wait)
        return Grant(
            granted=bool(granted),
            wait_s=math.inf if wait_s < 0 else wait_s,
            state=_state_of(figures),
        )

    def settle(
        self,
        requested: float,
        actual: float | None,
        throttle_status: Mapping[str, Any] | None,
        *,
        throttled: bool | None = None,
    ) -> BudgetState:
        """After a response: refund ``requested - actual``, then correct the mirror from Shopify's
        ``extensions.cost.throttleStatus``.

        ``requested`` is what ``take`` took for this request (the mirror's debit, even if Shopify's
        ``requestedQueryCost`` turned out different); ``actual`` is ``actualQueryCost`` or None
        when unknown (the whole taken cost then stays charged). ``throttled`` says the answer was
        THROTTLED; None infers it from the figures (no actual cost, and less available than
        requested: the condition under which Shopify refuses)."""
        requested = _amount("requested", requested)
        actual_arg = "" if actual is None else repr(_amount("actual", actual))
        status = throttle_status or {}
        s_max = _reported(status, "maximumAvailable")
        s_available = _reported(status, "currentlyAvailable")
        s_rate = _reported(status, "restoreRate")
        if s_max is not None and s_max <= 0:
            s_max = None  # a bucket of nothing is a broken report, not a shop that can never be served
        if throttled is None:
            throttled = actual is None and s_available is not None and s_available < requested
        figures = self._settle(
            keys=[self.key],
            args=[
                repr(requested),
                actual_arg,
                "" if s_max is None else repr(s_max),
                "" if s_available is None else repr(s_available),
                "" if s_rate is None else repr(s_rate),
                "1" if throttled else "0",
                *self._default_args(),
            ],
        )
        return _state_of(figures)

    def give_back(self, cost: float) -> None:
        """Return a taken cost whose request was certainly never sent."""
        self._give_back(keys=[self.key], args=[repr(_amount("cost", cost)), *self._default_args()])

    def state(self) -> BudgetState:
        args = [repr(self._default_maximum), repr(self._default_restore_rate)]
        return _state_of(self._state(keys=[self.key], args=args))

    def fits_ever(self, cost: float) -> bool:
        """Whether ``cost`` can ever be served: Shopify refuses a request above the bucket's size."""
        return _amount("cost", cost) <= self.state().maximum

    def _default_args(self) -> list[str]:
        return [repr(self._default_maximum), repr(self._default_restore_rate), self._ttl_ms]


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _amount(name: str, value: float) -> float:
    # A NaN or negative cost would poison the shared mirror for every worker of the shop.
    if not _finite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
    return float(value)


def _reported(status: Mapping[str, Any], field: str) -> float | None:
    """One figure of a throttleStatus; a missing or malformed one is no information, not an error."""
    value = status.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _state_of(figures: Any) -> BudgetState:
    maximum, available, rate = (float(x) for x in figures)
    return BudgetState(maximum=maximum, available=available, restore_rate=rate)


class CostBook:
    """The requested cost of each kind of request, as Shopify last reported it.

    Shopify computes a request's requested cost from the document and its variables before running
    it, so the same operation with the same page sizes costs the same every time: one answer
    teaches this process the figure, and until then ``fallback`` stands in. Per process, since a
    wrong first guess costs at most one THROTTLED answer or a short wait.
    """

    def __init__(self) -> None:
        self._costs: dict[str, float] = {}
        self._actual: dict[str, float] = {}
        self._lock = threading.Lock()

    def known(self, key: str) -> float | None:
        with self._lock:
            return self._costs.get(key)

    def actual(self, key: str) -> float | None:
        """What this kind of request was last really charged (``actualQueryCost``)."""
        with self._lock:
            return self._actual.get(key)

    def learn(self, key: str, requested: float | None, actual: float | None = None) -> None:
        with self._lock:
            if requested is not None and _finite(requested) and requested >= 0:
                self._costs[key] = float(requested)
            if actual is not None and _finite(actual) and actual >= 0:
                self._actual[key] = float(actual)


COSTS = CostBook()

PROBE_INTERVAL_S = 60.0
LOOK_AGAIN_S = 0.05  # how often a waiting request looks at the bucket again
_probes: dict[str, float] = {}
_probes_lock = threading.Lock()


class BudgetGate:
    """What a Shopify client asks the shop's shared budget before each request, and tells it after.

    ``take`` reserves the request's expected cost. When it does not fit, the request waits in
    place, looking again every ``LOOK_AGAIN_S``, for up to ``max_wait_s``: handing the order back
    and picking it up again costs more than that, and the refunds of requests in flight (charged
    their requested cost, most of it unused) usually arrive within a round trip. A bucket still
    short after that is handed back to the caller as ``Throttled`` (the run ends, its
    order comes back when the points are there, and its worker serves other shops meanwhile). A
    cost the bucket can never hold raises ``CostTooHigh``. Redis being away only costs the mirror:
    the request goes out unmetered and Shopify's own THROTTLED answers remain the backstop.
    """

    def __init__(
        self,
        budget: ShopBudget,
        *,
        max_wait_s: float,
        sleep: Callable[[float], None] = time.sleep,
        costs: CostBook = COSTS,
    ) -> None:
        self.budget = budget
        self.max_wait_s = max_wait_s
        self.costs = costs
        self._sleep = sleep

    def take(self, key: str, operation: str, fallback: float) -> float:
        """Reserve the cost of one request; returns what was taken (0.0 when unmetered)."""
        known = self.costs.known(key)
        cost = fallback if known is None else known
        waited = 0.0
        while True:
            try:
                grant = self.budget.take(cost)
            except RedisError as exc:
                _unmetered(self.budget.shop, exc)
                return 0.0
            if grant.granted:
                return cost
            if math.isinf(grant.wait_s):
                if grant.state.maximum <= 0 or (known is not None and not self._probe_due(key)):
                    raise CostTooHigh(operation, cost, grant.state.maximum)
                # Only a guess was too big, or the shop's bucket may have grown since it was last
                # reported (a plan upgrade): send it as the bucket's size and let the answer tell.
                cost = grant.state.maximum
                continue
            if waited == 0.0:
                metrics.throttle_wait(self.budget.shop)
            if waited >= self.max_wait_s:
                raise Throttled(grant.wait_s)
            # The wait is the refill's alone; requests of this shop still in flight were charged
            # their requested cost and get most of it back within a round trip (a 603-point read
            # costs 14), so look again soon rather than hand the order back on that estimate.
            nap = min(grant.wait_s, LOOK_AGAIN_S, self.max_wait_s - waited)
            self._sleep(nap)
            waited += nap

    def _probe_due(self, key: str) -> bool:
        """Once a minute per shop and request, a cost the mirror says can never fit is sent
        anyway, so a bucket that grew is noticed (the mirror only learns from answers)."""
        probe = f"{self.budget.shop} {key}"
        now = time.monotonic()
        with _probes_lock:
            if now - _probes.get(probe, -math.inf) < PROBE_INTERVAL_S:
                return False
            _probes[probe] = now
        return True

    def settle(
        self, key: str, taken: float, cost: Mapping[str, Any] | None, *, throttled: bool = False
    ) -> None:
        """After an answer: what it really cost, and Shopify's view of the bucket. Without an
        answer's figures (a 5xx, a timeout, a lost answer: ``cost`` None) the request is taken to
        have cost what this kind of request last cost: Shopify holds a request's requested cost
        only while it runs, so keeping all of it charged would hold back, for a 603-point read
        that costs 14, three seconds of a 200-point shop's budget per failure."""
        figures = cost or {}
        actual = _reported(figures, "actualQueryCost")
        self.costs.learn(key, _reported(figures, "requestedQueryCost"), actual)
        if cost is None and not throttled:
            actual = self.costs.actual(key)
        status = figures.get("throttleStatus")
        try:
            self.budget.settle(
                taken,
                None if throttled else actual,
                status if isinstance(status, Mapping) else None,
                throttled=throttled,
            )
        except RedisError as exc:
            _unmetered(self.budget.shop, exc)

    def give_back(self, taken: float) -> None:
        """The request was certainly not executed (never sent, 429, 401)."""
        if taken <= 0:
            return
        try:
            self.budget.give_back(taken)
        except RedisError as exc:
            _unmetered(self.budget.shop, exc)


_last_warning = 0.0


def _unmetered(shop: str, exc: BaseException) -> None:
    global _last_warning
    now = time.monotonic()
    if now - _last_warning > 60:  # one line a minute, not one per request
        _last_warning = now
        log.warning("shop budget unavailable (%s); calling %s unmetered", type(exc).__name__, shop)


def gate_for(shop_domain: str) -> BudgetGate:
    """The budget gate of one shop, on the process's Redis client and the settings' defaults."""
    settings = get_settings()
    budget = ShopBudget(
        get_redis(),
        shop_domain,
        default_maximum=settings.shopify_default_bucket,
        default_restore_rate=settings.shopify_default_restore_rate,
    )
    return BudgetGate(budget, max_wait_s=settings.shopify_budget_max_wait_s)
