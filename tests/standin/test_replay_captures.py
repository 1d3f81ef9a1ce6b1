"""Every recorded Shopify case, replayed against the stand-in (see replay.py for the method)."""

from __future__ import annotations

from pathlib import Path

import pytest

from standin.server import RunningStandin
from tests.standin.replay import CAPTURES, all_case_ids, replay_file

_results: dict[str, dict[str, tuple[str | None, list[str]]]] = {}


def _result(standin: RunningStandin, case_id: str) -> tuple[str | None, list[str]]:
    file_name = case_id.split("::", 1)[0]
    if file_name not in _results:
        _results[file_name] = replay_file(standin, CAPTURES / file_name)
    return _results[file_name][case_id]


@pytest.mark.parametrize("case_id", all_case_ids())
def test_recorded_case(standin: RunningStandin, case_id: str) -> None:
    reason, diffs = _result(standin, case_id)
    if reason:
        pytest.skip(reason)
    assert not diffs, "\n".join(diffs)


def test_every_capture_file_has_replayed_cases(standin: RunningStandin) -> None:
    replayed = {cid.split("::")[0] for cid in all_case_ids() if _result(standin, cid)[0] is None}
    names = {p.name for p in Path(CAPTURES).glob("*.json")}
    # Files made only of other resources' setup/reads are listed in standin/README.md.
    assert "2026-04--returnClose-Reopen-Cancel-state-preconditions.json" in replayed
    assert len(replayed) >= len(names) - 6
