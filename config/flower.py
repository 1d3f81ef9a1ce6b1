"""Flower's settings: ``celery -A tasks.app flower --conf=config/flower.py`` (the Procfile's ``flower``).

A config file rather than command-line flags, so the basic-auth password never shows in ``ps``.
With basic auth set, Flower sends no wildcard CORS headers either (flower/views/__init__.py), so a
page open in an operator's browser cannot read task history. Flower is an operator tool: bind it to
loopback (or a private network) and put it behind the same access control as the ops page.
"""

from config import get_settings, require_safe

_settings = get_settings()
require_safe(_settings, "flower")

basic_auth = [_settings.flower_basic_auth]
address = _settings.flower_host
port = _settings.flower_port

# Flower serves /metrics without asking for credentials (for Prometheus); it names every task
# type and worker, so it asks like every other page (Prometheus scrapes with basic auth too).
from flower.views import monitor  # noqa: E402
from tornado.web import authenticated  # noqa: E402

monitor.Metrics.get = authenticated(monitor.Metrics.get)
