"""Pure translations from the returns platform's vocabulary to Shopify's. No I/O beyond the CSV.

Everything here is deterministic so a replayed event produces byte-identical Shopify input:
reason handles, the reason and customer notes, refund-method tags, and the exchange note appended
to the order note.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from workers.events import EventItem, RefundMethod

# A copy of shared/spec/reason-map.csv: the repository must not depend on the shared folder.
REASON_MAP_PATH = Path(__file__).with_name("reason_map.csv")

OTHER_HANDLE = "other-reason"
# Shopify's limits, from the Admin API: returnReasonNote is at most 255 characters and an order note
# at most 5,000 characters.
REASON_NOTE_MAX = 255
ORDER_NOTE_MAX = 5000

# Reason 23 is listed in the source with a Shopify reason that does not exist; PRODUCT.md maps it to
# Style. Kept explicit here so a regenerated CSV cannot silently undo the decision.
_FORCED_HANDLES = {23: "style"}


@dataclass(frozen=True)
class Reason:
    reason_id: int
    text_nl: str
    text_en: str
    shopify_enum: str
    handle: str


def _load_reasons(path: Path = REASON_MAP_PATH) -> dict[int, Reason]:
    reasons: dict[int, Reason] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            reason_id = int(row["reason_id"])
            reasons[reason_id] = Reason(
                reason_id=reason_id,
                text_nl=row["returns_platform_reason_nl"].strip(),
                text_en=row["returns_platform_reason_en"].strip(),
                shopify_enum=row["shopify_reason_enum"].strip(),
                handle=_FORCED_HANDLES.get(reason_id, row["shopify_reason_handle"].strip()),
            )
    return reasons


REASONS: dict[int, Reason] = _load_reasons()


def reason_handle(reason_id: int | None, overrides: Mapping[str, str] | None = None) -> str:
    """The Shopify reason-definition handle for a platform reason id.

    A shop's overrides (``{"<reason_id>": "<handle>"}``, as stored in ``shops.reason_overrides``)
    win over the CSV; unknown ids become Other.
    """
    if reason_id is None:
        return OTHER_HANDLE
    if overrides:
        override = overrides.get(str(reason_id))
        if override and override.strip():
            return override.strip()
    reason = REASONS.get(reason_id)
    return reason.handle if reason else OTHER_HANDLE


def all_reason_handles(overrides: Mapping[str, str] | None = None) -> list[str]:
    """Every handle the sync may send for a shop: what to resolve to definition ids up front."""
    handles = {reason.handle for reason in REASONS.values()} | {OTHER_HANDLE}
    handles |= {value.strip() for value in (overrides or {}).values() if value and value.strip()}
    return sorted(handles)


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def reason_note(item: EventItem, handle: str, language: str = "nl") -> str | None:
    """``returnReasonNote`` of a return line: exactly the original reason text (PRODUCT.md §2).

    Shopify requires a note with Other, and Other hides what the customer actually said, so an
    item mapped to Other without a text gets the reason's own label (the CSV's wording in the
    shop's language, or "Other" for an unknown id). Any other reason without a text sends none.
    At most 255 characters.
    """
    text = (item.reason or "").strip()
    if not text and handle == OTHER_HANDLE:
        known = REASONS.get(item.reason_id)
        text = (known.text_en if language == "en" else known.text_nl) if known else "Other"
    return _truncate(text, REASON_NOTE_MAX) if text else None


def customer_note(item: EventItem) -> str | None:
    """``customerNote`` of a requested return line: exactly the buyer's note, or none."""
    note = (item.customer_note or "").strip()
    return note or None


# Refund-method tags (PRODUCT.md, "Refund-method tags"): one tag per method, per language.
REFUND_TAGS: dict[str, dict[str, str]] = {
    "en": {
        "exchange": "Sendcloud Return: Exchange",
        "refund": "Sendcloud Return: Money back",
        "store_credit": "Sendcloud Return: Store credit",
    },
    "nl": {
        "exchange": "Sendcloud Retour: Omruiling",
        "refund": "Sendcloud Retour: Geld terug",
        "store_credit": "Sendcloud Retour: Winkeltegoed",
    },
}


def refund_tag(method: RefundMethod | str, language: str = "en") -> str:
    """The order tag for a refund method in the shop's language (English when unknown)."""
    labels = REFUND_TAGS.get(language, REFUND_TAGS["en"])
    try:
        return labels[method]
    except KeyError:
        raise ValueError(f"unknown refund method {method!r}") from None


def all_refund_tags() -> list[str]:
    """Every refund-method tag in every language (a shop may have switched language)."""
    return [tag for labels in REFUND_TAGS.values() for tag in labels.values()]


def _marker(platform_return_id: str) -> str:
    return f"[Return {platform_return_id}] exchange: "


def has_exchange_note(current_note: str | None, platform_return_id: str) -> bool:
    """Whether the order note already carries the exchange note of this return."""
    if not current_note:
        return False
    pattern = re.compile(rf"^\[Return {re.escape(platform_return_id)}\] exchange:", re.MULTILINE)
    return bool(pattern.search(current_note))


def append_exchange_note(current_note: str | None, platform_return_id: str, exchange_note: str) -> str | None:
    """The order note with this return's exchange note appended, or None if there is nothing to write.

    Shopify's ``orderUpdate(note:)`` overwrites the whole note, so the caller does a
    read-modify-write; the marker line makes a replay a no-op. None means: the marker is already
    there (see ``has_exchange_note``), the exchange note is blank, or the merchant's note leaves no
    room within 5,000 characters. Only the added text is ever shortened, never the existing note.
    """
    # One line per return, so the marker stays at a line start and a search finds it.
    text = " ".join(exchange_note.split())
    if not text or has_exchange_note(current_note, platform_return_id):
        return None
    existing = current_note or ""
    separator = "\n" if existing and not existing.endswith("\n") else ""
    prefix = existing + separator + _marker(platform_return_id)
    room = ORDER_NOTE_MAX - len(prefix)
    if room < 1:
        return None
    return prefix + _truncate(text, room)
