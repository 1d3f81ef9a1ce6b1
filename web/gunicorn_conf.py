"""Gunicorn settings for the ingest service, from ``config.get_settings()`` like everything else.

``gunicorn -c web/gunicorn_conf.py web.wsgi:application``.

gevent workers: a request mostly waits on its client (the body) and on one Postgres commit, so a
greenlet per connection overlaps those waits cheaply, and a client that trickles its body holds a
greenlet, not one of a few threads: twenty stalled uploads can no longer starve the endpoint
(gthread's 2 workers x 8 threads were 16 slots). psycopg2 is made cooperative with psycogreen so a
query waits without blocking the other greenlets. A body that has not arrived within
``INGEST_BODY_TIMEOUT_S`` is answered 408 (web/app.py), so stalled connections end.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

from gunicorn import glogging

from config import get_settings, prometheus, require_safe
from config.logging import dict_config

_settings = get_settings()
# In the master, before any worker is forked: a refusal stops gunicorn instead of a worker that
# gunicorn would restart forever.
require_safe(_settings, "web")
# Also in the master: every worker inherits the metrics directory before it imports anything.
prometheus.prepare(_settings)

bind = f"{_settings.ingest_host}:{_settings.ingest_port}"
worker_class = "gevent"
workers = max(2, min(4, multiprocessing.cpu_count()))
worker_connections = _settings.ingest_worker_connections
loglevel = _settings.log_level.lower()
# Our one handler (config/logging.py) for gunicorn's own lines too; gunicorn applies it again on
# a reload (SIGHUP), where a configure() at import would lose to its own handlers.
logconfig_dict = dict_config("web")
accesslog = None  # access lines carry paths with shop/return ids; the app logs what it needs


class _NoAccessLog(glogging.Logger):
    """Given a logging config, gunicorn builds every request's access-log fields (4 % of an ingest
    request's CPU) whatever ``accesslog`` says, for a logger that is off."""

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        return


logger_class = _NoAccessLog
timeout = 30
graceful_timeout = 10
keepalive = 5


def post_fork(server: Any, worker: Any) -> None:
    # Every worker here is gevent's (worker_class), which patches itself right after this hook;
    # psycopg2's wait callback works with or without the patching done.
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()


def child_exit(server: Any, worker: Any) -> None:
    # In the master, once a worker has gone (a restart, a crash, a timeout kill): its files of
    # live gauges go (workers.metrics.process_dead, without loading the app into the master).
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(worker.pid, _settings.prometheus_multiproc_dir)
