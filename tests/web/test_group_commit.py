"""Group commit (web/group_commit.py) with real threads: requests that arrive while a write is in
flight share the next one, each gets its own answer, and one item's failure stays its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from web.group_commit import GroupCommit, WriteInterrupted


class Store:
    """Records every write; the first batch write can be held until released."""

    def __init__(self, hold_first: bool = False, bad: frozenset[str] = frozenset()) -> None:
        self.batches: list[list[str]] = []
        self.singles: list[str] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        self.hold_first = hold_first
        self.bad = bad

    def write_batch(self, items: Sequence[str]) -> list[str]:
        self.batches.append(list(items))
        if self.hold_first and len(self.batches) + len(self.singles) == 1:
            self.holding.set()
            assert self.release.wait(10)
        if self.bad & set(items):
            raise RuntimeError("the whole batch fails")
        return [f"stored {item}" for item in items]

    def write_one(self, item: str) -> str:
        self.singles.append(item)
        if self.hold_first and len(self.batches) + len(self.singles) == 1:
            self.holding.set()
            assert self.release.wait(10)
        if item in self.bad:
            raise ValueError(f"{item} is bad")
        return f"stored {item}"


def queued(group: GroupCommit[str, str], count: int) -> bool:
    with group._lock:
        return len(group._queue) >= count


def wait_until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def hold_then_queue(
    pool: ThreadPoolExecutor, group: GroupCommit[str, str], store: Store, names: Sequence[str]
) -> tuple[Future[str], dict[str, Future[str]]]:
    """Start a write ("first") that the store holds, then queue ``names`` behind it."""
    first = pool.submit(group.submit, "first")
    assert store.holding.wait(10)
    later = {name: pool.submit(group.submit, name) for name in names}
    wait_until(lambda: queued(group, len(names)))
    return first, later


def test_a_lone_request_is_written_at_once_on_its_own() -> None:
    store = Store()
    group = GroupCommit(store.write_batch, store.write_one, max_batch=64)
    assert group.submit("a") == "stored a"
    assert (store.singles, store.batches) == (["a"], [])


def test_requests_arriving_during_a_write_share_the_next_one_and_get_their_own_answers() -> None:
    store = Store(hold_first=True)
    group = GroupCommit(store.write_batch, store.write_one, max_batch=64)
    with ThreadPoolExecutor(max_workers=8) as pool:
        first, later = hold_then_queue(pool, group, store, ("b", "c", "d", "e"))
        assert not any(f.done() for f in later.values())  # nobody answered before its write
        store.release.set()
        assert first.result(10) == "stored first"
        assert {name: f.result(10) for name, f in later.items()} == {n: f"stored {n}" for n in later}
    assert store.singles == ["first"]
    assert [sorted(batch) for batch in store.batches] == [["b", "c", "d", "e"]]


def test_a_batch_never_exceeds_its_limit() -> None:
    store = Store(hold_first=True)
    group = GroupCommit(store.write_batch, store.write_one, max_batch=2)
    with ThreadPoolExecutor(max_workers=8) as pool:
        first, later = hold_then_queue(pool, group, store, "bcde")
        store.release.set()
        answers = [first.result(10)] + [later[n].result(10) for n in "bcde"]
        assert answers == [f"stored {n}" for n in ["first", *"bcde"]]
    assert [len(batch) for batch in store.batches] == [2, 2]


def test_when_a_batch_fails_each_item_is_written_alone_and_only_the_bad_one_fails() -> None:
    store = Store(hold_first=True, bad=frozenset({"bad"}))
    group = GroupCommit(store.write_batch, store.write_one, max_batch=64)
    with ThreadPoolExecutor(max_workers=8) as pool:
        first, later = hold_then_queue(pool, group, store, ("b", "bad", "c"))
        store.release.set()
        first.result(10)
        assert later["b"].result(10) == "stored b"
        assert later["c"].result(10) == "stored c"
        with pytest.raises(ValueError, match="bad is bad"):
            later["bad"].result(10)
    assert sorted(store.singles) == ["b", "bad", "c", "first"]


def test_after_a_burst_the_group_is_idle_and_the_next_request_writes_at_once() -> None:
    store = Store()
    group = GroupCommit(store.write_batch, store.write_one, max_batch=64)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(group.submit, [str(i) for i in range(200)]))
    assert answers == [f"stored {i}" for i in range(200)]
    written = store.singles + [item for batch in store.batches for item in batch]
    assert sorted(written) == sorted(str(i) for i in range(200))  # each exactly once
    assert group.submit("late") == "stored late"


class Stopped(BaseException):
    """What killing a greenlet, or a timeout raised into it, looks like to the code it stops."""


def test_a_writer_stopped_mid_write_leaves_its_batch_unknown_and_the_next_write_goes_on() -> None:
    store = Store(hold_first=True)
    written = store.write_batch

    def stopped_once(items: Sequence[str]) -> list[str]:
        if "b" in items:
            raise Stopped
        return written(items)

    group = GroupCommit(stopped_once, store.write_one, max_batch=64)
    with ThreadPoolExecutor(max_workers=8) as pool:
        first, later = hold_then_queue(pool, group, store, ("b", "c"))
        store.release.set()
        assert first.result(10) == "stored first"
        # The writer of ("b", "c") is stopped: it stops, and the request it carried learns that
        # its outcome is unknown instead of getting an empty answer.
        assert {type(f.exception(10)) for f in later.values()} == {Stopped, WriteInterrupted}
    assert group.submit("d") == "stored d"  # the group is not left waiting for a writer
