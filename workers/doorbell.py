"""The doorbell: tell the workers an order has work, fairly across shops.

Postgres holds the work; Redis only says "look at this order". Ringing puts the order in its shop's
ready set of the fair dispatcher (``workers.dispatch``); the dispatcher hands ready orders to the
workers as ``returns.apply_order(order_id)`` messages, taking turns between shops, never more than
the workers can run. Losing Redis costs a delay (the beat sweep re-rings from Postgres), never an
event. Messages are sent by the task's stable name through a producer-only Celery app built from the
same settings as the workers' (``config.celery``), so the relay, the sweep and the workers ring the
same bell without importing the task layer. Nothing on ingest's request path rings it: ingest only
commits (``workers.store.outbox``) and the relay rings.
"""

from __future__ import annotations

import logging
import os
import threading

from celery import Celery
from redis import Redis
from redis.exceptions import RedisError

from config import get_settings
from config.celery import celery_config
from config.settings import Settings
from workers.dispatch import Dispatcher
from workers.redis_state import get_redis
from workers.store import outbox
from workers.store.db import DatabaseUnavailable

log = logging.getLogger(__name__)

APPLY_ORDER = "returns.apply_order"

_lock = threading.Lock()
_producer: Celery | None = None
_producer_pid: int | None = None


def _app() -> Celery:
    global _producer, _producer_pid
    # A producer inherited over fork() shares its broker connection with the parent.
    if _producer is None or _producer_pid != os.getpid():
        with _lock:
            if _producer is None or _producer_pid != os.getpid():
                app = Celery("returnsync-doorbell")
                app.conf.update(celery_config(get_settings()))
                _producer, _producer_pid = app, os.getpid()
    return _producer


# (the Redis client and the settings it was built from, it): its scripts are hashed once.
_dispatcher: tuple[Redis, Settings, Dispatcher] | None = None


def dispatcher() -> Dispatcher:
    """The process's dispatcher, built again when its Redis client (a new process, a reset) or
    the settings (tests) are new."""
    global _dispatcher
    redis, settings = get_redis(), get_settings()
    cached = _dispatcher
    if cached is not None and cached[0] is redis and cached[1] is settings:
        return cached[2]
    made = _new_dispatcher(redis, settings)
    _dispatcher = (redis, settings, made)
    return made


def _new_dispatcher(redis: Redis, settings: Settings) -> Dispatcher:
    return Dispatcher(
        redis,
        max_in_flight=settings.dispatch_max_in_flight,
        shop_max_in_flight=settings.dispatch_shop_max_in_flight,
        # A run keeps its place by touching it whenever it renews its order's lease (and when it
        # starts), so a place whose run was killed is free again within about two lease lives:
        # a worker killed mid-run would otherwise shrink its shop's share until the place expired.
        in_flight_ttl_s=2.0 * settings.order_lease_ttl_s,
    )


def publish(order_id: int) -> bool:
    """Put one ``returns.apply_order(order_id)`` message on the queue. Never raises: False (and a
    log line) when Redis is unreachable."""
    try:
        # retry=False: a dead broker costs one failed connect, not Celery's publish-retry loop;
        # the callers (relay, sweep) have their own schedule for trying again.
        _app().send_task(APPLY_ORDER, args=(order_id,), retry=False)
    except Exception as exc:  # kombu raises several families (OperationalError, redis errors, OSError)
        log.warning("could not ring order %s: %s", order_id, type(exc).__name__)
        return False
    return True


def ring_only(order_id: int, shop_id: int, delay_s: float = 0.0) -> bool:
    """Make the order ready (in ``delay_s``) without handing anything out yet; False when Redis is
    away. Ringing an order that is already ready, or running, adds nothing."""
    try:
        dispatcher().ring(shop_id, order_id, delay_s)
    except RedisError as exc:
        log.warning("could not ring order %s: %s", order_id, type(exc).__name__)
        return False
    return True


def dispatch() -> float | None:
    """Hand out what may run now; returns the seconds until more is due (None: nothing waits).
    Never raises: Redis away means nothing can be handed out, and the relay tries again."""
    try:
        _, wake = dispatcher().drain(publish)
    except RedisError as exc:
        log.warning("could not dispatch: %s", type(exc).__name__)
        return None
    return wake


def ring(order_id: int, shop_id: int | None = None, delay_s: float = 0.0) -> bool:
    """Ring the order's doorbell, hand out what may run, and mark its open events rung; False
    when Redis is away, in which case the sweep rings it later because its events keep
    ``enqueued_at`` unset or old."""
    shop = shop_id if shop_id is not None else outbox.shop_of(order_id)
    if shop is None or not ring_only(order_id, shop, delay_s):
        return False
    dispatch()
    try:
        outbox.mark_enqueued(order_id)
    except Exception:
        # The order is rung; a missing mark only means the sweep may ring it once more.
        log.warning("rang order %s but could not mark its events", order_id, exc_info=True)
    return True


def alive(order_id: int) -> None:
    """The order's run is going on: keep its place in the dispatcher. Never raises."""
    try:
        dispatcher().touch(order_id)
    except RedisError as exc:
        log.debug("could not touch order %s in the dispatcher: %s", order_id, type(exc).__name__)


def finished(order_id: int, again_in_s: float | None = None, *, pause_shop_s: float | None = None) -> None:
    """A run of the order ended: free its place, bring it back in ``again_in_s`` if it must come
    back (or at once if it was rung while running), pause its shop if Shopify's budget is spent,
    and hand out the next work. Works with Postgres away (the dispatcher knows the order's shop);
    Redis away: the sweep brings back what needs to come back."""
    try:
        d = dispatcher()
        # The dispatcher knows the shop of every run it handed out; only a message from before a
        # Redis flush (or published directly) needs Postgres to say it.
        if not d.finish(order_id, None, again_in_s, pause_shop_s=pause_shop_s):
            try:
                shop = outbox.shop_of(order_id)
            except DatabaseUnavailable:
                shop = None
            if shop is not None:
                d.finish(order_id, shop, again_in_s, pause_shop_s=pause_shop_s)
    except RedisError as exc:
        log.warning("could not finish order %s in the dispatcher: %s", order_id, type(exc).__name__)
        return
    dispatch()
