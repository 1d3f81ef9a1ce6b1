"""The process's Redis client for the shared state that is not a Celery message: the per-shop API
budget (``workers.budget``) and the fair dispatcher (``workers.dispatch``).

Both are caches of what Postgres and Shopify say: losing Redis costs some THROTTLED answers and a
sweep's delay, never an event. So the client fails fast (short timeouts) rather than holding a run.
"""

from __future__ import annotations

import os
import threading

from redis import Redis

from config import get_settings

_lock = threading.Lock()
_client: Redis | None = None
_pid: int | None = None


def get_redis() -> Redis:
    """One pooled client per process (a client inherited over fork() shares the parent's sockets)."""
    global _client, _pid
    if _client is None or _pid != os.getpid():
        with _lock:
            if _client is None or _pid != os.getpid():
                _client = Redis.from_url(
                    get_settings().redis_url,
                    socket_timeout=2.0,
                    socket_connect_timeout=1.0,
                    health_check_interval=30,
                )
                _pid = os.getpid()
    return _client


def reset() -> None:
    """Forget the client (tests that change REDIS_URL)."""
    global _client, _pid
    with _lock:
        _client, _pid = None, None
