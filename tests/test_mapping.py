"""workers.mapping: reasons, reason and customer notes, refund tags and the exchange note."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers import mapping
from workers.events import EventItem

REPO_CSV = Path(mapping.__file__).with_name("reason_map.csv")
# The spec's copy (../shared, present in CI) is the reference; the repo copy must not drift from it.
SPEC_CSV = Path(__file__).resolve().parents[2] / "shared" / "spec" / "reason-map.csv"
CSV_ROWS = list(csv.DictReader((SPEC_CSV if SPEC_CSV.exists() else REPO_CSV).open(encoding="utf-8")))


@pytest.mark.skipif(not SPEC_CSV.exists(), reason="shared spec folder not present")
def test_the_repo_copy_of_the_reason_map_matches_the_spec() -> None:
    assert REPO_CSV.read_text(encoding="utf-8") == SPEC_CSV.read_text(encoding="utf-8")


def test_every_platform_reason_is_loaded() -> None:
    ids = {int(row["reason_id"]) for row in CSV_ROWS}
    assert len(ids) == 30 and max(ids) == 32
    assert set(mapping.REASONS) == ids


@pytest.mark.parametrize("row", CSV_ROWS, ids=[row["reason_id"] for row in CSV_ROWS])
def test_every_csv_row_maps_to_its_handle(row: dict[str, str]) -> None:
    assert mapping.reason_handle(int(row["reason_id"]), {}) == row["shopify_reason_handle"]


def test_known_mappings() -> None:
    assert mapping.reason_handle(23, {}) == "style"  # the source names a reason Shopify lacks
    assert mapping.reason_handle(30, {}) == "too-big"
    assert mapping.reason_handle(31, {}) == "too-small"
    assert mapping.reason_handle(21, {}) == "damaged-or-defective"
    assert mapping.reason_handle(11, {}) == "changed-my-mind"


@pytest.mark.parametrize("reason_id", [0, 2, 33, 999, None])
def test_unknown_reasons_become_other(reason_id: int | None) -> None:
    assert mapping.reason_handle(reason_id, {}) == "other-reason"


def test_shop_overrides_win_and_may_name_unknown_ids() -> None:
    overrides = {"22": "too-small", "999": "color", "23": "  "}
    assert mapping.reason_handle(22, overrides) == "too-small"
    assert mapping.reason_handle(999, overrides) == "color"
    assert mapping.reason_handle(23, overrides) == "style"  # a blank override is no override
    assert mapping.reason_handle(30, overrides) == "too-big"


def test_all_reason_handles_covers_the_csv_and_the_overrides() -> None:
    handles = mapping.all_reason_handles({"5": "absorbency"})
    assert {row["shopify_reason_handle"] for row in CSV_ROWS} <= set(handles)
    assert "absorbency" in handles and "other-reason" in handles


def _item(reason_id: int = 23, reason: str | None = None, customer_note: str | None = None) -> EventItem:
    return EventItem("gid://shopify/LineItem/1", 1, reason_id, reason, customer_note)


def test_reason_note_is_exactly_the_original_reason_text() -> None:
    # PRODUCT.md §2: the original reason text goes as returnReasonNote, nothing added to it.
    item = _item(23, "Het staat me niet", customer_note="Valt te klein")
    assert mapping.reason_note(item, "style") == "Het staat me niet"
    assert mapping.reason_note(_item(30, "  Te groot "), "too-big") == "Te groot"


def test_other_without_a_text_gets_the_reason_label_and_other_reasons_get_no_note() -> None:
    assert mapping.reason_note(_item(7), mapping.OTHER_HANDLE) == "Verkeerde product verzonden"
    assert mapping.reason_note(_item(7), mapping.OTHER_HANDLE, language="en") == "Wrong product shipped"
    assert mapping.reason_note(_item(777, "  "), mapping.OTHER_HANDLE) == "Other"
    assert mapping.reason_note(_item(30), "too-big") is None


def test_customer_note_is_exactly_the_buyers_note_or_none() -> None:
    assert mapping.customer_note(_item(23, "Het staat me niet", "Valt te klein")) == "Valt te klein"
    assert mapping.customer_note(_item(23, "Het staat me niet")) is None
    assert mapping.customer_note(_item(23, "Het staat me niet", "   ")) is None


def test_reason_note_is_truncated_to_255() -> None:
    note = mapping.reason_note(_item(3, "x" * 300), mapping.OTHER_HANDLE)
    assert note is not None and len(note) == 255
    assert note.startswith("x" * 250)


@given(
    reason=st.one_of(st.none(), st.text(max_size=300)),
    reason_id=st.integers(min_value=1, max_value=40),
)
def test_a_line_mapped_to_other_always_has_a_note_within_255(reason: str | None, reason_id: int) -> None:
    handle = mapping.reason_handle(reason_id)
    note = mapping.reason_note(_item(reason_id, reason), handle)
    if handle == mapping.OTHER_HANDLE:
        assert note is not None and note.strip() and len(note) <= 255
    if reason and reason.strip():
        assert note is not None and note.startswith(reason.strip()[:200].rstrip())


@pytest.mark.parametrize(
    ("method", "language", "tag"),
    [
        ("exchange", "en", "Sendcloud Return: Exchange"),
        ("refund", "en", "Sendcloud Return: Money back"),
        ("store_credit", "en", "Sendcloud Return: Store credit"),
        ("exchange", "nl", "Sendcloud Retour: Omruiling"),
        ("refund", "nl", "Sendcloud Retour: Geld terug"),
        ("store_credit", "nl", "Sendcloud Retour: Winkeltegoed"),
        ("refund", "de", "Sendcloud Return: Money back"),  # unknown language -> English
    ],
)
def test_refund_tags(method: str, language: str, tag: str) -> None:
    assert mapping.refund_tag(method, language) == tag


def test_refund_tag_rejects_unknown_methods_and_lists_all_tags() -> None:
    with pytest.raises(ValueError):
        mapping.refund_tag("voucher", "en")
    tags = mapping.all_refund_tags()
    assert len(tags) == len(set(tags)) == 6
    # Shopify tags cannot contain commas (a comma splits a tag in two).
    assert all("," not in tag for tag in tags)


def test_exchange_note_is_appended_with_a_marker_and_only_once() -> None:
    first = mapping.append_exchange_note("Gift wrap please", "R-100234", "Graag maat M in plaats van L")
    assert first == "Gift wrap please\n[Return R-100234] exchange: Graag maat M in plaats van L"
    assert mapping.append_exchange_note(first, "R-100234", "Graag maat M in plaats van L") is None
    assert mapping.append_exchange_note(first, "R-100234", "something else") is None
    second = mapping.append_exchange_note(first, "R-100235", "Blauw graag")
    assert second == first + "\n[Return R-100235] exchange: Blauw graag"


def test_exchange_note_on_an_empty_note_and_multiline_text() -> None:
    assert mapping.append_exchange_note(None, "R-1", "a\nb") == "[Return R-1] exchange: a b"
    assert mapping.append_exchange_note("", "R-1", "x") == "[Return R-1] exchange: x"
    assert mapping.append_exchange_note("note", "R-1", "   ") is None


def test_a_return_id_that_prefixes_another_is_not_mistaken_for_it() -> None:
    note = mapping.append_exchange_note(None, "R-10", "x")
    assert not mapping.has_exchange_note(note, "R-1")
    assert mapping.append_exchange_note(note, "R-1", "y") is not None


def test_the_exchange_note_is_truncated_to_keep_the_order_note_within_5000() -> None:
    merchant = "m" * 4900
    result = mapping.append_exchange_note(merchant, "R-1", "z" * 2000)
    assert result is not None and len(result) == 5000
    assert result.startswith(merchant + "\n[Return R-1] exchange: z")
    # No room at all: nothing is written, and the merchant's text is never cut.
    assert mapping.append_exchange_note("m" * 4990, "R-1", "z") is None


@given(
    current=st.one_of(st.none(), st.text(max_size=5200)),
    return_id=st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True),
    exchange=st.text(max_size=2000),
)
def test_exchange_note_invariants(current: str | None, return_id: str, exchange: str) -> None:
    result = mapping.append_exchange_note(current, return_id, exchange)
    if result is None:
        return
    assert len(result) <= 5000
    assert result.startswith(current or "")  # the merchant's text is kept as is
    assert mapping.has_exchange_note(result, return_id)
    assert mapping.append_exchange_note(result, return_id, exchange) is None  # idempotent
