"""What a log line is about: the event, shop, order and task a piece of work concerns.

The values live in a ``contextvars`` variable, so they follow the work and not the process: each
gevent greenlet (a web request) and each thread has its own, and a nested ``bind`` adds to the
outer one and restores it on exit. ``config.logging`` puts them on every record::

    with logcontext.bind(shop=event.shop, event_id=event.id):
        log.info("accepted")          # ... "shop": "acme-nl.myshopify.com", "event_id": "evt_1" ...

The Celery task id needs no binding: the formatter takes it from the task being run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType

FIELDS = ("event_id", "shop", "order_id", "task_id")

_EMPTY: Mapping[str, object] = MappingProxyType({})
_context: ContextVar[Mapping[str, object]] = ContextVar("returnsync_log_context", default=_EMPTY)


@contextmanager
def bind(
    *,
    event_id: str | None = None,
    shop: str | None = None,
    order_id: int | None = None,
    task_id: str | None = None,
) -> Iterator[None]:
    """Add these fields (those not None) to every log line written inside the block."""
    given = {"event_id": event_id, "shop": shop, "order_id": order_id, "task_id": task_id}
    token = _context.set(
        MappingProxyType({**_context.get(), **{k: v for k, v in given.items() if v is not None}})
    )
    try:
        yield
    finally:
        _context.reset(token)


def current() -> Mapping[str, object]:
    """The fields bound here and now (read-only)."""
    return _context.get()
