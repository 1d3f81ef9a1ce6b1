"""Group commit: concurrent requests of one process share one write to Postgres.

Each request hands its item to ``GroupCommit.submit`` and waits for its own answer. While a batch
is being written, new items queue; when it is done, the first of them becomes the next writer and
takes everything queued so far (up to ``max_batch``). Nothing waits for a timer: alone, a request
is a batch of one and is written at once; under load, the batch is whatever arrived during the
previous write, so the round trip and the commit are shared by as many requests as the load
brings. This is how Postgres itself groups WAL flushes, one level up, where it also saves the
statement, its planning and the transaction per event.

An answer is handed out only after its batch committed. When a batch of several fails, each of
its items is written again on its own (``write_one``), so one item's error, a deadlock or a
dropped connection is that item's answer alone, exactly as without grouping.

A writer stopped mid-write (its greenlet killed, a timeout raised into it) leaves the outcome
of its batch unknown: every item of it then raises ``WriteInterrupted``, which its caller treats
like a connection lost at commit, and the writer role passes on as usual.

The primitives are ``threading``'s: under gevent's monkey patching (the gunicorn workers) they
are cooperative, and with real threads (tests) they are ordinary locks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar


class WriteInterrupted(Exception):
    """The write that carried this item was stopped before it answered: stored or not, unknown."""


Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(eq=False)
class _Pending(Generic[Item, Result]):
    item: Item
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # woken to write the next batch, not with an answer
    result: Result | None = None
    error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        write_batch: Callable[[Sequence[Item]], Sequence[Result]],
        write_one: Callable[[Item], Result],
        max_batch: int,
    ) -> None:
        self._write_batch = write_batch
        self._write_one = write_one
        self._max_batch = max(1, max_batch)
        self._lock = threading.Lock()
        self._queue: list[_Pending[Item, Result]] = []
        self._writing = False

    def submit(self, item: Item) -> Result:
        """Write ``item`` (with whatever else is queued) and return its result, or raise its error."""
        pending: _Pending[Item, Result] = _Pending(item)
        with self._lock:
            self._queue.append(pending)
            lead = not self._writing
            self._writing = True
        while True:
            if lead:
                self._write_next()
            pending.done.wait()
            if not pending.lead:
                break
            pending.done.clear()
            pending.lead, lead = False, True
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    def _write_next(self) -> None:
        with self._lock:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
        try:
            self._write(batch)
        except BaseException:
            for pending in batch:
                if pending.result is None and pending.error is None:
                    pending.error = WriteInterrupted("the write carrying this item was interrupted")
            raise
        finally:
            with self._lock:
                if self._queue:
                    # The writer role passes to the oldest waiting request; it takes the queue.
                    successor = self._queue[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._writing = False
            for pending in batch:
                pending.done.set()

    def _write(self, batch: list[_Pending[Item, Result]]) -> None:
        if len(batch) > 1:
            try:
                results = self._write_batch([pending.item for pending in batch])
            except Exception:  # each item then gets its own answer, below
                pass
            else:
                for pending, result in zip(batch, results, strict=True):
                    pending.result = result
                return
        for pending in batch:
            try:
                pending.result = self._write_one(pending.item)
            except Exception as exc:  # handed to the request it belongs to
                pending.error = exc
