"""Gunicorn settings for the ingest service, from ``config.get_settings()`` like everything else.

``gunicorn -c ingest/gunicorn_conf.py ingest.wsgi:application``. gthread workers: each request
mostly waits on one Postgres commit, so threads overlap those waits cheaply.
"""

from __future__ import annotations

import multiprocessing

from config import get_settings

_settings = get_settings()

bind = f"{_settings.ingest_host}:{_settings.ingest_port}"
worker_class = "gthread"
workers = max(2, min(4, multiprocessing.cpu_count()))
# Never more threads than pooled connections: psycopg2's pool raises instead of waiting when empty.
threads = max(1, min(8, _settings.database_pool_max))
loglevel = _settings.log_level.lower()
accesslog = None  # access lines carry paths with shop/return ids; the app logs what it needs
timeout = 30
graceful_timeout = 10
keepalive = 5
