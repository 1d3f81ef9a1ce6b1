"""Fair dispatch: which order runs next, so one shop's backlog never delays another shop's returns.

Why this design
---------------
A single FIFO queue serves events in arrival order: a merchant's backfill of 10,000 events sits in
front of every other merchant's one return, and every event rings its order again, so the queue
fills with runs that find nothing to do. Instead, rung orders wait here, in Redis, per shop, and
only as many are handed to Celery as the workers can run (``DISPATCH_MAX_IN_FLIGHT``), taking
turns between shops. The Celery queue stays short, so a message is picked up within moments of
being sent; fairness is decided here, not by the broker.

* **One pending doorbell per order.** ``ring`` puts an order in its shop's ready set (a sorted set
  by due time; ``ZADD LT`` keeps the earliest), so ringing an order already waiting adds nothing.
  Ringing an order that is running is remembered (``again``) and the order is ready again when its
  run ends: the run may have read Shopify before the new event arrived.
* **Due times instead of countdowns.** A run that must come back in N seconds (a busy order, a
  shop out of budget, a failed attempt's backoff) is rung with that delay; the dispatcher hands it
  out once it is due, ahead of any backlog, since a backlog is another shop's or behind this one.
* **Turns between shops.** Each shop with ready work has a score in ``shops``: the earliest it may
  be served, the latest of its first due order, the moment it was last served (so a shop served
  just now goes behind every shop that was ready before) and the end of a pause (Shopify's budget
  of that shop is spent: nobody takes a worker to wait on it). A shop with
  ``DISPATCH_SHOP_MAX_IN_FLIGHT`` runs out waits for one to end: a burst of one shop fills that
  shop's share and the rest of the fleet stays free for the others.
* **Crash safety.** A handed-out order is in flight until its run calls ``finish``; if the run
  never does (the worker was killed and the message lost), the entry expires after
  ``DISPATCH_IN_FLIGHT_TTL_S`` (longer than a task's hard time limit) and the order is ready again.
  Everything here is a cache of Postgres: after a Redis flush the beat sweep rings every order
  with open work again. Two workers never apply one order at once whatever this says: the
  per-order lease (``workers.locking``) decides that.

Every operation is one Lua script on Redis' own clock, so any number of relays and workers, on any
number of machines, dispatch together without a coordinator.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from redis import Redis

log = logging.getLogger(__name__)

PREFIX = "returnsync:dispatch:"

# Shared by every script. KEYS are built in Lua from PREFIX (the scripts touch per-shop keys they
# only learn while running, which a Redis Cluster would not allow; we run one Redis primary).
_PRELUDE = """
local P = ARGV[1]
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function fmt(x) return string.format('%.17g', x) end

-- The shop's place in the rotation: when it may next be served (nil when it has nothing ready).
local function place(shop, max_per_shop, now)
  local first = redis.call('ZRANGE', P .. 'due:' .. shop, 0, 0, 'WITHSCORES')
  local paused = tonumber(redis.call('HGET', P .. 'paused', shop) or '0')
  if paused > 0 and paused <= now then
    redis.call('HDEL', P .. 'paused', shop)
    paused = 0
  end
  if #first == 0 then
    -- Out of the rotation; its turn only matters among shops with something ready.
    redis.call('ZREM', P .. 'shops', shop)
    redis.call('HDEL', P .. 'served', shop)
    return nil
  end
  local score = tonumber(first[2])
  local served = tonumber(redis.call('HGET', P .. 'served', shop) or '0')
  if served > score then score = served end
  if paused > score then score = paused end
  local running = P .. 'running:' .. shop
  redis.call('ZREMRANGEBYSCORE', running, '-inf', now)
  if redis.call('ZCARD', running) >= max_per_shop then
    -- Full: finish() places it again; until then, at the latest when a run of it would expire.
    local soonest = redis.call('ZRANGE', running, 0, 0, 'WITHSCORES')
    local expiry = tonumber(soonest[2])
    if expiry > score then score = expiry end
  end
  redis.call('ZADD', P .. 'shops', score, shop)
  return score
end

local function make_ready(shop, order, due, max_per_shop, now)
  redis.call('ZADD', P .. 'due:' .. shop, 'LT', due, order)
  place(shop, max_per_shop, now)
end
"""

# ARGV: prefix, shop, order, delay_s, max_per_shop
_RING = (
    _PRELUDE
    + """
local shop, order = ARGV[2], ARGV[3]
local now = now_s()
local due = now + tonumber(ARGV[4])
local expiry = redis.call('ZSCORE', P .. 'inflight', order)
if expiry and tonumber(expiry) > now then
  local again = redis.call('HGET', P .. 'again', order)
  if (not again) or tonumber(again) > due then redis.call('HSET', P .. 'again', order, fmt(due)) end
  return 'running'
end
make_ready(shop, order, due, tonumber(ARGV[5]), now)
return 'ready'
"""
)

# ARGV: prefix, order, delay_s (or '' for: only if rung meanwhile), max_per_shop, shop (or ''),
# pause_s (or '')
_FINISH = (
    _PRELUDE
    + """
local order = ARGV[2]
local now = now_s()
-- A run the dispatcher did not hand out (a message from before a Redis flush) still comes back.
local shop = redis.call('HGET', P .. 'inflight_shop', order) or ARGV[5]
if shop == '' then return 0 end
if ARGV[6] ~= '' then
  local untilt = now + tonumber(ARGV[6])
  local current = tonumber(redis.call('HGET', P .. 'paused', shop) or '0')
  if untilt > current then redis.call('HSET', P .. 'paused', shop, fmt(untilt)) end
end
redis.call('ZREM', P .. 'inflight', order)
redis.call('HDEL', P .. 'inflight_shop', order)
local again = redis.call('HGET', P .. 'again', order)
redis.call('HDEL', P .. 'again', order)
redis.call('ZREM', P .. 'running:' .. shop, order)
local due = nil
if again then due = tonumber(again) end
if ARGV[3] ~= '' then
  local later = now + tonumber(ARGV[3])
  -- Rung during the run: that event is new work, due now; the run's own "come back" is later.
  if (not due) or later < due then due = later end
end
if due then
  make_ready(shop, order, due, tonumber(ARGV[4]), now)
else
  place(shop, tonumber(ARGV[4]), now)
end
return 1
"""
)

# ARGV: prefix, shop, seconds, max_per_shop
_PAUSE = (
    _PRELUDE
    + """
local shop = ARGV[2]
local now = now_s()
local untilt = now + tonumber(ARGV[3])
local current = tonumber(redis.call('HGET', P .. 'paused', shop) or '0')
if untilt > current then redis.call('HSET', P .. 'paused', shop, fmt(untilt)) end
place(shop, tonumber(ARGV[4]), now)
return fmt(untilt)
"""
)

# ARGV: prefix, max_total, max_per_shop, in_flight_ttl_s, limit
# Returns {order, shop, order, shop, ...} handed out, then the next wake-up in seconds ('' if none,
# or if the fleet is at its limit: a run's end dispatches then).
_DISPATCH = (
    _PRELUDE
    + """
local max_total, max_per_shop = tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = now_s()
-- Runs that never finished (their worker died, their message was lost): ready again.
local lost = redis.call('ZRANGEBYSCORE', P .. 'inflight', '-inf', now)
for _, order in ipairs(lost) do
  local shop = redis.call('HGET', P .. 'inflight_shop', order)
  redis.call('ZREM', P .. 'inflight', order)
  redis.call('HDEL', P .. 'inflight_shop', order)
  redis.call('HDEL', P .. 'again', order)
  if shop then
    redis.call('ZREM', P .. 'running:' .. shop, order)
    make_ready(shop, order, now, max_per_shop, now)
  end
end
local out = {}
local total = redis.call('ZCARD', P .. 'inflight')
local seq = 0
local guard = 0
while total < max_total and #out < 2 * limit and guard < 4 * limit do
  guard = guard + 1
  -- Up to the turns handed out in this call, so a shop can have a second turn once all others had one.
  local top = redis.call('ZRANGEBYSCORE', P .. 'shops', '-inf', fmt(now + seq * 1e-6), 'LIMIT', 0, 1)
  if #top == 0 then break end
  local shop = top[1]
  local ready = redis.call('ZRANGEBYSCORE', P .. 'due:' .. shop, '-inf', now, 'LIMIT', 0, 1)
  local running = P .. 'running:' .. shop
  if #ready == 0 or redis.call('ZCARD', running) >= max_per_shop then
    place(shop, max_per_shop, now)  -- its score was stale: put it where it belongs
  else
    local order = ready[1]
    redis.call('ZREM', P .. 'due:' .. shop, order)
    redis.call('ZADD', P .. 'inflight', now + ttl, order)
    redis.call('HSET', P .. 'inflight_shop', order, shop)
    redis.call('ZADD', running, now + ttl, order)
    -- Behind every shop that was ready before this moment; ties broken in serving order.
    seq = seq + 1
    redis.call('HSET', P .. 'served', shop, fmt(now + seq * 1e-6))
    place(shop, max_per_shop, now)
    out[#out + 1] = order
    out[#out + 1] = shop
    total = total + 1
  end
end
local wake = ''
-- At the fleet's limit nothing can be handed out before a run ends, and every run's end
-- dispatches: no wake-up (a caller that looked again at once would only spin).
if total < max_total then
  local nxt = redis.call('ZRANGE', P .. 'shops', 0, 0, 'WITHSCORES')
  if #nxt > 0 then wake = fmt(math.max(0, tonumber(nxt[2]) - now)) end
end
out[#out + 1] = wake
return out
"""
)

# ARGV: prefix, order, in_flight_ttl_s. Returns 1 if the order was in flight (now for longer).
_TOUCH = (
    _PRELUDE
    + """
local order = ARGV[2]
local shop = redis.call('HGET', P .. 'inflight_shop', order)
if not shop then return 0 end
local expires = now_s() + tonumber(ARGV[3])
redis.call('ZADD', P .. 'inflight', 'XX', expires, order)
redis.call('ZADD', P .. 'running:' .. shop, 'XX', expires, order)
return 1
"""
)

# ARGV: prefix
_STATE = """
local P = ARGV[1]
local shops = redis.call('ZRANGE', P .. 'shops', 0, -1)
local out = {redis.call('ZCARD', P .. 'inflight'), #shops}
local ready = 0
for _, shop in ipairs(shops) do ready = ready + redis.call('ZCARD', P .. 'due:' .. shop) end
out[#out + 1] = ready
return out
"""


@dataclass(frozen=True)
class Handout:
    """Orders to publish now, and when the dispatcher should look again (None: nothing waits)."""

    orders: tuple[tuple[int, int], ...]  # (order id, shop id)
    wake_in_s: float | None


@dataclass(frozen=True)
class DispatchState:
    in_flight: int
    shops_ready: int
    orders_ready: int


class Dispatcher:
    """The shared dispatch state in Redis. Cheap to build; safe to share between threads."""

    def __init__(
        self,
        redis: Redis,
        *,
        max_in_flight: int,
        shop_max_in_flight: int,
        in_flight_ttl_s: float,
        prefix: str = PREFIX,
    ) -> None:
        if max_in_flight < 1 or shop_max_in_flight < 1 or in_flight_ttl_s <= 0:
            raise ValueError("dispatch limits must be positive")
        self.max_in_flight = max_in_flight
        self.shop_max_in_flight = shop_max_in_flight
        self.in_flight_ttl_s = float(in_flight_ttl_s)
        self.prefix = prefix
        self._ring = redis.register_script(_RING)
        self._finish = redis.register_script(_FINISH)
        self._pause = redis.register_script(_PAUSE)
        self._dispatch = redis.register_script(_DISPATCH)
        self._state = redis.register_script(_STATE)
        self._touch = redis.register_script(_TOUCH)

    def ring(self, shop_id: int, order_id: int, delay_s: float = 0.0) -> bool:
        """The order has work, due in ``delay_s``. True: it is ready (now or later); False: it is
        running, and will be ready again when the run ends."""
        reply = self._ring(args=[self.prefix, shop_id, order_id, _delay(delay_s), self.shop_max_in_flight])
        return _text(reply) == "ready"

    def finish(
        self,
        order_id: int,
        shop_id: int | None = None,
        again_in_s: float | None = None,
        *,
        pause_shop_s: float | None = None,
    ) -> bool:
        """A run of the order ended; ``again_in_s``: it must come back that much later;
        ``pause_shop_s``: its shop's budget is spent for that long. ``shop_id`` is only needed for
        a run the dispatcher did not hand out (it knows its own): False, and nothing done, when
        it is needed and missing."""
        again = "" if again_in_s is None else _delay(again_in_s)
        pause = "" if pause_shop_s is None else _delay(pause_shop_s)
        shop = "" if shop_id is None else str(shop_id)
        return bool(self._finish(args=[self.prefix, order_id, again, self.shop_max_in_flight, shop, pause]))

    def touch(self, order_id: int) -> bool:
        """The order's run is alive: its place stays taken for another ``in_flight_ttl_s``. A run
        that stops touching (its worker was killed) frees its place when that time is up."""
        return bool(self._touch(args=[self.prefix, order_id, repr(self.in_flight_ttl_s)]))

    def pause(self, shop_id: int, seconds: float) -> None:
        """No run of this shop is handed out for ``seconds`` (its Shopify budget is spent)."""
        self._pause(args=[self.prefix, shop_id, _delay(seconds), self.shop_max_in_flight])

    def dispatch(self, limit: int = 100) -> Handout:
        """Hand out up to ``limit`` ready orders, taking turns between shops, within the limits."""
        reply = self._dispatch(
            args=[self.prefix, self.max_in_flight, self.shop_max_in_flight, repr(self.in_flight_ttl_s), limit]
        )
        *pairs, wake = reply
        orders = tuple((int(pairs[i]), int(pairs[i + 1])) for i in range(0, len(pairs), 2))
        wake_text = _text(wake)
        return Handout(orders=orders, wake_in_s=float(wake_text) if wake_text else None)

    def state(self) -> DispatchState:
        in_flight, shops, ready = (int(x) for x in self._state(args=[self.prefix]))
        return DispatchState(in_flight=in_flight, shops_ready=shops, orders_ready=ready)

    def drain(self, publish: Callable[[int], bool], limit: int = 100) -> tuple[int, float | None]:
        """Hand out what may run and publish it; an order whose publish failed is put back.
        Returns (published, seconds until something more is due)."""
        handout = self.dispatch(limit)
        sent = 0
        for order_id, shop_id in handout.orders:
            if publish(order_id):
                sent += 1
            else:
                self.finish(order_id, shop_id, again_in_s=1.0)
        return sent, handout.wake_in_s


def _delay(seconds: float) -> str:
    value = float(seconds)
    if not math.isfinite(value) or value < 0:
        value = 0.0
    return repr(value)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
