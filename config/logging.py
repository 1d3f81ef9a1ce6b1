"""Logging of every returnsync process: one ``configure(process)``, one line per record.

- ``LOG_FORMAT=json`` (the default in production): one JSON object per line with ``time`` (UTC,
  ISO 8601), ``level``, ``logger``, ``message``, ``process`` (the role: web, worker, beat, relay,
  cli...), ``pid``, and whichever of ``event_id``, ``shop``, ``order_id``, ``task_id`` are known
  (``config.logcontext.bind``, a record's ``extra=``, and the Celery task being run), plus ``exc``
  with the traceback. A newline in a message stays inside its JSON string, so nobody can forge a
  line. ``LOG_FORMAT=text`` (the local default) writes the same as one readable line.
- Secrets never reach the output: every record goes through ``MaskSecrets`` (message and args,
  then the traceback), which masks Shopify tokens and secrets (``shpat_``, ``shpss_``, ``shprt_``,
  ``shpca_``), Standard Webhooks secrets (``whsec_``), Fernet keys, ``Bearer``/``Basic``
  credentials, passwords in URLs, and the exact secret values of our own settings.

Where each process calls it: gunicorn through ``logconfig_dict = dict_config("web")``
(web/gunicorn_conf.py: gunicorn applies it in the master and again on a reload, and replaces its
own handlers); Celery's worker and beat from the ``setup_logging`` signal (tasks/app.py); the relay
and the CLI from their ``main()``.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import sys
from datetime import UTC, datetime
from typing import Any

from config import logcontext
from config.settings import Settings, get_settings

FORMATS = ("json", "text")
MASK = "[masked]"

# Shapes of secrets, whatever their source: a token in an exception message, a header echoed by a
# library, a URL with its password.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(shpat|shpss|shprt|shpca)_[A-Za-z0-9_\-]+"), r"\1_" + MASK),
    (re.compile(r"whsec_[A-Za-z0-9+/=_\-]+"), "whsec_" + MASK),
    # A Fernet key: url-safe base64 of 32 bytes, 43 characters and one "=".
    (re.compile(r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{43}=(?![A-Za-z0-9_=\-])"), MASK),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]+", re.IGNORECASE), r"\1 " + MASK),
    (re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):[^@/\s]+@"), r"\1:" + MASK + "@"),
)
# Shorter values of our own settings are not masked by value: they would mask ordinary words.
_MIN_KNOWN_SECRET = 8


def known_secrets(settings: Settings) -> tuple[str, ...]:
    """The secret values of these settings, longest first (a secret containing another)."""
    values: list[str] = [
        *settings.ingest_secrets,
        *(secret.removeprefix("whsec_") for secret in settings.ingest_secrets),
        settings.status_api_token,
        *settings.token_encryption_keys,
        *settings.shopify_client_secrets,
    ]
    for auth in (settings.flower_basic_auth, settings.metrics_basic_auth, *settings.ops_users):
        values += [auth, auth.partition(":")[2]]
    values.append(settings.web_secret_key)
    found = {v for v in values if len(v) >= _MIN_KNOWN_SECRET}
    return tuple(sorted(found, key=len, reverse=True))


def mask(text: str, known: tuple[str, ...] = ()) -> str:
    """``text`` with everything that looks like a secret (or is one of ``known``) masked."""
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class MaskSecrets(logging.Filter):
    """Masks a record's message with its args merged in (the args are dropped: what they held
    is in the message now). On the handler, so records of every logger pass through it."""

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self.known = known_secrets(get_settings())

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the template, drop the args
            message, record.args = str(record.msg), None
        record.msg, record.args = mask(message, self.known), None
        return True


def _task_id() -> str | None:
    # Only where Celery is loaded (a worker): the web process and the relay never import it.
    state = sys.modules.get("celery._state")
    if state is None:
        return None
    try:
        task = state.get_current_task()
        return None if task is None or task.request.id is None else str(task.request.id)
    except Exception:
        return None


def context_of(record: logging.LogRecord) -> dict[str, object]:
    """The context fields known for this record: bound ones, then ``extra=``, then the task."""
    found: dict[str, object] = dict(logcontext.current())
    for field in logcontext.FIELDS:
        value = record.__dict__.get(field)
        if value is not None:
            found[field] = value
    if "task_id" not in found and (task_id := _task_id()) is not None:
        found["task_id"] = task_id
    return {field: found[field] for field in logcontext.FIELDS if field in found}


class _Formatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process
        self.known = known_secrets(get_settings())

    def _time(self, record: logging.LogRecord) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    def _traceback(self, record: logging.LogRecord) -> str | None:
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return mask("\n".join(parts), self.known) if parts else None


class JsonFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self._time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage(), self.known),
            "process": self.process,
            "pid": record.process,
        }
        entry.update(context_of(record))
        traceback = self._traceback(record)
        if traceback is not None:
            entry["exc"] = traceback
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(_Formatter):
    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(f"{k}={v}" for k, v in context_of(record).items())
        line = (
            f"{self._time(record)} {record.levelname} {self.process}[{record.process}] {record.name}: "
            f"{mask(record.getMessage(), self.known)}{f' [{context}]' if context else ''}"
        )
        traceback = self._traceback(record)
        return f"{line}\n{traceback}" if traceback is not None else line


def log_format(settings: Settings) -> str:
    """The format in force: LOG_FORMAT, or json in production and text in the local mode."""
    chosen = settings.log_format.strip().lower() or ("text" if settings.returnsync_env == "local" else "json")
    if chosen not in FORMATS:
        raise SystemExit(f"returnsync: LOG_FORMAT must be one of {', '.join(FORMATS)}, not {chosen!r}")
    return chosen


def formatter(process: str) -> logging.Formatter:
    """The formatter of LOG_FORMAT (a ``()`` factory of ``dict_config``)."""
    return JsonFormatter(process) if log_format(get_settings()) == "json" else TextFormatter(process)


# A line per message: Celery's task received and succeeded, an accepted event, a relay round.
PER_MESSAGE_LOGGERS = ("celery.worker.strategy", "celery.app.trace", "ingest.accepted", "workers.relay.rings")


def dict_config(process: str, level: str | int | None = None) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` description of ``configure``: one handler on the root
    logger, on stderr; gunicorn's loggers hand their records to it."""
    settings = get_settings()
    log_format(settings)  # refuse a bad LOG_FORMAT now, not at the first record
    if level is None:
        level = settings.log_level.upper()
    elif isinstance(level, int):
        level = logging.getLevelName(level)
    per_message = level if level == "DEBUG" or settings.log_per_message else "WARNING"
    return {
        "version": 1,
        # Loggers made at import (every module's ``log``) keep working.
        "disable_existing_loggers": False,
        "filters": {"secrets": {"()": MaskSecrets}},
        "formatters": {"returnsync": {"()": formatter, "process": process}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "returnsync",
                "filters": ["secrets"],
            }
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # Without handlers of their own, they propagate to the root's.
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            # Off: gunicorn writes access lines whenever it is given a logging config, and they
            # carry raw paths and query strings (an OAuth callback's code and HMAC, shop and return
            # ids). The app logs what it needs, by route rule.
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
            # A line for every task received and done, every event accepted, every relay round is
            # most of a busy system's output (about 2 % of a worker's CPU) and says what the
            # attempts table, the events, the metrics and Flower already say: shown at DEBUG, or
            # with LOG_PER_MESSAGE. A task that fails still logs its error here.
            **{name: {"level": per_message} for name in PER_MESSAGE_LOGGERS},
        },
    }


def configure(process: str, level: str | int | None = None) -> None:
    """Set up logging for this process (``process`` names its role in every line) at ``level``
    (default ``LOG_LEVEL``)."""
    logging.config.dictConfig(dict_config(process, level))
    # Python's warnings (deprecations of a library) become records too, not raw stderr lines.
    logging.captureWarnings(True)
