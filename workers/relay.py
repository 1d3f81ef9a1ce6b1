"""The relay: ring the workers' doorbell for what ingest (and an operator's repair) committed, and
hand out ready work as it comes due.

    python -m workers.relay        (the ``relay`` process of the Procfile; run one or several)

Ingest only writes Postgres: an accepted event is an outbox entry (``enqueued_at`` NULL). This
process looks at the outbox every ``RELAY_POLL_S`` (25 ms; one indexed query), and at once when
a rare writer (an operator's repair, a reinstall) NOTIFYs
``workers.store.outbox.WORK_CHANNEL``; ingest does not notify, since a notifying commit holds a
database-wide lock through its WAL flush (migration 0008). Each look rings every order with
unrung events into the fair dispatcher (``workers.dispatch``), marks those events, and
dispatches. It also wakes when the dispatcher says the next delayed run is due, so a run meant to
come back in N seconds is handed out then. So:

- a request never waits on Redis, and never pays for a publish: a slow, full or absent broker
  costs ingest nothing;
- while Redis is unreachable the relay stops trying for a while (a circuit breaker with backoff,
  ``RELAY_BACKOFF_S`` doubling up to ``RELAY_BACKOFF_CAP_S``) and the events wait in Postgres;
- several relays may run: ringing an order twice adds nothing (one pending doorbell per order),
  and the dispatcher's scripts are atomic. The beat sweep stays the safety net for anything a
  relay did not ring.
"""

from __future__ import annotations

import logging
import select
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

import psycopg2
import psycopg2.extensions

from config import get_settings, require_safe
from config import logging as log_config
from workers import doorbell
from workers.store import outbox
from workers.store.db import DatabaseUnavailable

log = logging.getLogger("workers.relay")
rings_log = logging.getLogger("workers.relay.rings")


def relay_once(ring: Callable[[int, int], bool] = doorbell.ring_only, limit: int = 500) -> tuple[int, bool]:
    """Ring every order with unrung events once (into the fair dispatcher; ``dispatch`` hands
    them out). Returns (orders rung, whether Redis took every ring); stops at the first refusal,
    since the rest would fail the same way."""
    orders, events = 0, list[int]()
    healthy = True
    for item in outbox.unrung(limit):
        if not ring(item.order_id, item.shop_id):
            healthy = False
            break
        # Only the events seen before the ring: one committed since is rung next time.
        events.extend(item.event_ids)
        orders += 1
    if events:
        # One commit for the round, not one per order: at ingest's rate each would be a WAL flush.
        outbox.mark_rung(events)
    return orders, healthy


@dataclass
class Breaker:
    """After a refused publish, stop trying for a while; each refusal in a row doubles the wait."""

    base_s: float
    cap_s: float
    failures: int = 0
    open_until: float = 0.0

    def allows(self, now: float) -> bool:
        return now >= self.open_until

    def failed(self, now: float) -> float:
        self.failures += 1
        wait = min(self.cap_s, self.base_s * 2 ** (self.failures - 1))
        self.open_until = now + wait
        return wait

    def succeeded(self) -> None:
        self.failures, self.open_until = 0, 0.0


def _listen() -> psycopg2.extensions.connection:
    settings = get_settings()
    conn = psycopg2.connect(settings.database_listen_url or settings.database_url, connect_timeout=3)
    conn.autocommit = True  # LISTEN takes effect at once and notifications arrive between commands
    with conn.cursor() as cur:
        cur.execute(f"LISTEN {outbox.WORK_CHANNEL}")
    return conn


class Relay:
    def __init__(
        self,
        ring: Callable[[int, int], bool] = doorbell.ring_only,
        dispatch: Callable[[], float | None] = doorbell.dispatch,
    ) -> None:
        settings = get_settings()
        self.ring = ring
        self.dispatch = dispatch
        self.poll_s = settings.relay_poll_s
        self.wake_in: float | None = None  # when the dispatcher has something due next
        self.breaker = Breaker(settings.relay_backoff_s, settings.relay_backoff_cap_s)
        self.stopping = False
        self.conn: psycopg2.extensions.connection | None = None

    def run(self) -> None:
        while not self.stopping:
            try:
                self._wait_for_work()
                self._ring()
            except DatabaseUnavailable as exc:
                # Postgres restarting: nothing can be rung or lost meanwhile; reconnect shortly.
                log.warning("relay: database unavailable (%s); retrying", type(exc).__name__)
                self._close()
                time.sleep(min(self.poll_s, 1.0))

    def _wait_for_work(self) -> None:
        if self.conn is None or self.conn.closed:
            self.conn = _listen()
        now = time.monotonic()
        timeout = self.poll_s if self.breaker.allows(now) else max(0.0, self.breaker.open_until - now)
        if self.wake_in is not None and self.breaker.allows(now):
            timeout = min(timeout, self.wake_in)
        if select.select([self.conn], [], [], timeout)[0]:
            self.conn.poll()
            # One burst of commits is one round of ringing, however many notifications it sent.
            self.conn.notifies.clear()

    def _ring(self) -> None:
        now = time.monotonic()
        if not self.breaker.allows(now):
            return
        rung, healthy = relay_once(self.ring)
        if healthy:
            self.wake_in = self.dispatch()
            if self.breaker.failures:
                log.info("relay: Redis is back")
            self.breaker.succeeded()
        else:
            wait = self.breaker.failed(now)
            log.warning("relay: Redis unreachable after %d orders; trying again in %.1fs", rung, wait)
        if rung:
            rings_log.info("relay: rang %d orders", rung)  # a per-message logger (config/logging.py)

    def _close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None

    def stop(self, *_: object) -> None:
        self.stopping = True


def main() -> int:
    settings = get_settings()
    require_safe(settings, "relay")
    log_config.configure("relay")
    relay = Relay()

    def stop(signum: int, frame: FrameType | None) -> None:
        relay.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("relay: listening on %s", outbox.WORK_CHANNEL)
    relay.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
