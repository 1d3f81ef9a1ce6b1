"""The beat's scheduler: RedBeat, so that exactly one beat schedules even when several run.

RedBeat keeps the schedule (each entry's last run) in Redis and lets only the holder of one Redis
lock send tasks; every other beat process waits for that lock and takes over when the holder
stops (at once, a clean stop releases it) or dies (``BEAT_LOCK_TIMEOUT_S`` later, when the lock it
no longer renews expires). So a standby beat per machine is safe, and two started by mistake do
not run every task twice.

What this subclass adds: Redis is our disposable doorbell, so the beat must outlive it. Plain
RedBeat stops for good when Redis is flushed (the schedule is gone, and renewing the vanished lock
raises) or unreachable (the error ends the beat). Here a tick that cannot reach Redis tries again
after a loop, a lock found lost is waited for again (another beat may hold it now), and a schedule
found gone is installed again from the configuration; its entries are then due at once, which is
what a flush calls for (the sweep re-rings what Redis lost).
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import beat_init
from redbeat.schedulers import (  # type: ignore[import-untyped]
    LUA_EXTEND_TO_SCRIPT,
    RedBeatScheduler,
    acquire_distributed_beat_lock,
    get_redis,
)
from redis.exceptions import LockError, RedisError

log = logging.getLogger("celery.beat")

# RedBeat takes its lock in a beat_init handler that blocks without saying so and, if Redis is
# away at that moment, leaves the beat without a lock for good. The first tick takes it instead.
beat_init.disconnect(acquire_distributed_beat_lock)


class SingleBeatScheduler(RedBeatScheduler):
    # The held redis-py Lock, or None while this beat does not hold the schedule.
    lock: Any = None

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            if self.lock is None:
                self._hold_lock()
            self._restore_schedule_if_lost()
            interval: float = super().tick(*args, **kwargs)
            return interval
        except LockError:
            # Expired while this beat was stalled, or flushed with the rest of Redis: another beat
            # may be scheduling now, so nothing is sent until the lock is ours again.
            log.warning("beat: lost the schedule lock; waiting to hold it again")
            self.lock = None
            return 0.0
        except RedisError as exc:
            log.warning(
                "beat: Redis unreachable (%s); trying again in %ss", type(exc).__name__, self.max_interval
            )
            return float(self.max_interval)

    def _hold_lock(self) -> None:
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        # RedBeat's renewal sets the lock's remaining life to the full timeout (redis-py's adds).
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        if not lock.acquire(blocking=False):
            log.info("beat: another beat holds the schedule lock %s; standing by", self.lock_key)
            lock.acquire()
        log.info("beat: holding the schedule lock %s; scheduling", self.lock_key)
        self.lock = lock

    def _restore_schedule_if_lost(self) -> None:
        if not get_redis(self.app).exists(self.app.redbeat_conf.statics_key):
            log.warning("beat: the schedule is gone from Redis (flushed?); installing it again")
            self.setup_schedule()

    def close(self) -> None:
        try:
            super().close()
        except RedisError as exc:
            # The lock then expires by itself; a standby waits that long.
            log.warning("beat: could not release the schedule lock (%s)", type(exc).__name__)
