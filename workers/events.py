"""A return event, the central object of the sync: the contract's schema and its frozen value.

``load_event(body)`` validates a parsed body against the ingest contract
(/work/shared/spec/INGEST.md) and builds a ``ReturnEvent`` (marshmallow's ``post_load``). Ingest
calls it on every request; the workers call it again on the stored body, so both sides see the same
typed event and an event that no longer validates is refused where it is read, not deep in a run.

Marshmallow is lenient where the contract is not (``True`` is an ``Integral``, ``"1"`` and ``1.0``
pass ``Integer`` without ``strict``, ``$`` in a regex matches before a trailing newline), so the
fields below are strict on purpose. Unknown fields are left out of the event (``EXCLUDE``); the
endpoint stores the whole parsed body, so nothing the producer sent is lost. The same schema
generates ``/openapi.json``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    pre_load,
    validate,
    validates_schema,
)

from workers.statuses import EventType, ReturnState


class Origin(StrEnum):
    RETURN_PORTAL = "return_portal"
    RETURN_PORTAL_REQUEST = "return_portal_request"
    RETURN_PORTAL_NO_OUTBOUND = "return_portal_no_outbound"
    MANUAL_ORDER_RETURN = "manual_order_return"
    LABEL_IN_THE_BOX = "label_in_the_box"


class RefundMethod(StrEnum):
    EXCHANGE = "exchange"
    REFUND = "refund"
    STORE_CREDIT = "store_credit"


# --- the value objects ------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderRef:
    """How the event names the Shopify order: its GID, its name, or both."""

    gid: str | None
    name: str | None


@dataclass(frozen=True)
class Tracking:
    number: str
    url: str | None = None
    carrier: str | None = None


@dataclass(frozen=True)
class EventItem:
    line_item_gid: str
    quantity: int
    reason_id: int
    reason: str | None = None
    customer_note: str | None = None


@dataclass(frozen=True)
class EventReturn:
    """The event's ``return`` object: the full snapshot of the return at ``occurred_at``."""

    id: str
    order: OrderRef
    origin: Origin
    items: tuple[EventItem, ...]
    refund_method: RefundMethod | None = None
    exchange_note: str | None = None
    tracking: Tracking | None = None

    def quantities(self) -> dict[str, int]:
        """Line item GID -> quantity asked for (an item may be listed twice)."""
        totals: dict[str, int] = {}
        for item in self.items:
            totals[item.line_item_gid] = totals.get(item.line_item_gid, 0) + item.quantity
        return totals


@dataclass(frozen=True)
class ReturnEvent:
    id: str
    type: EventType
    occurred_at: datetime
    shop: str
    event_return: EventReturn

    @property
    def state(self) -> ReturnState:
        return self.type.state

    @property
    def sort_key(self) -> tuple[datetime, str]:
        """When it happened, ties broken by id: the one order every decision about events uses."""
        return (self.occurred_at, self.id)


class InvalidEvent(ValueError):
    """A body that breaks the contract; ``errors`` maps dotted field paths to messages (at most
    ``MAX_REPORTED_ERRORS`` of them, the rest counted under ``"..."``)."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        first = next(iter(errors.items()), ("body", ["invalid"]))
        super().__init__(f"{first[0]}: {'; '.join(first[1])}")
        if len(errors) > MAX_REPORTED_ERRORS:
            shown = dict(list(errors.items())[:MAX_REPORTED_ERRORS])
            shown["..."] = [f"{len(errors) - MAX_REPORTED_ERRORS} more fields have errors"]
            errors = shown
        self.errors = errors


# --- the schema -------------------------------------------------------------------------------

# Written with ``$`` so /openapi.json carries them as valid JSON Schema patterns; they are applied
# with fullmatch (FullRegexp), because ``re.match`` and ``$`` would accept a trailing newline.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
SHOP_PATTERN = r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$"
MAX_ITEMS = 250
# Counts and reason ids end up in Postgres integer columns and Shopify Int arguments (32-bit).
MAX_INT32 = 2**31 - 1
# Shopify ids are 64-bit; a longer digit string cannot be a real id.
MAX_SHOPIFY_ID = 2**63 - 1

MAX_OFFSET = timedelta(hours=14)
EARLIEST = datetime(2000, 1, 1)
LATEST_WALL = datetime(9999, 12, 30)
LATEST_AHEAD = timedelta(days=7)
# More field errors than this in a 422 are summarised: the answer stays small whatever the body.
MAX_REPORTED_ERRORS = 20

_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)


class FullRegexp(validate.Regexp):
    """``Regexp`` that must match the whole string: ``"evt_1\\n"`` is not a valid id."""

    def __call__(self, value: Any) -> Any:
        pattern = cast("re.Pattern[str]", self.regex)
        if not isinstance(value, str) or pattern.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


class StrictInteger(fields.Integer):
    """A JSON integer only: no booleans, no floats (not even ``1.0``), no numeric strings."""

    default_error_messages = {"invalid": "Must be an integer."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


class StrictString(fields.String):
    """A JSON string only (marshmallow's String would also take bytes, which JSON never yields)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        return value


class ShopifyId(fields.Field):
    """A Shopify GID of one resource type, or its numeric id (as a JSON integer or digit string).

    Deserialises to the GID, so the rest of the system sees one form whatever the producer sent.
    """

    default_error_messages = {"invalid": "Must be a gid://shopify/{resource}/<digits> GID or a numeric id."}

    def __init__(self, resource: str, **kwargs: Any) -> None:
        self.resource = resource
        self._gid = re.compile(rf"^gid://shopify/{resource}/([0-9]{{1,19}})\Z")
        metadata = kwargs.pop("metadata", {})
        metadata.setdefault(
            "oneOf",
            [
                {"type": "string", "pattern": rf"^(gid://shopify/{resource}/)?[0-9]{{1,19}}$"},
                {"type": "integer", "minimum": 1, "maximum": MAX_SHOPIFY_ID},
            ],
        )
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str):
            match = self._gid.match(value)
            digits = match.group(1) if match else value
            if re.fullmatch(r"[0-9]{1,19}", digits):
                number = int(digits)
        if number is None or not 1 <= number <= MAX_SHOPIFY_ID:
            raise self.make_error("invalid", resource=self.resource)
        return f"gid://shopify/{self.resource}/{number}"


class Rfc3339DateTime(fields.Field):
    """RFC 3339 date-time with a mandatory offset (``Z`` or ``±hh:mm``); naive times are ambiguous.

    Only what both Python and Postgres hold, and what a return event can mean: offsets within
    ±14:00 (the real-world range; Postgres refuses more than ±15:59), instants from 2000-01-01 UTC
    to seven days ahead of now (a producer's clock may run fast, and the contract's own examples
    are dated a few days ahead; an event further in the future, or from before e-commerce, is a
    bug, and year 1 at a positive offset is year 0 in UTC, which Python cannot represent).
    """

    default_error_messages = {
        "invalid": "Must be an RFC 3339 date-time with an offset, e.g. 2026-11-29T10:15:00Z.",
        "offset": "The offset must be within -14:00 and +14:00.",
        "range": "Must be between 2000-01-01T00:00:00Z and seven days from now.",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(metadata={"type": "string", "format": "date-time"}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not _RFC3339.match(value):
            raise self.make_error("invalid")
        try:
            # 3.11's fromisoformat takes "Z" and fractions of any length up to 6 digits; trim to 6.
            text = re.sub(r"(\.\d{6})\d+", r"\1", value.upper().replace("Z", "+00:00"))
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:  # e.g. month 13, leap second 23:59:60
            raise self.make_error("invalid") from exc
        offset = parsed.utcoffset()
        if offset is None:
            raise self.make_error("invalid")
        if abs(offset) > MAX_OFFSET:
            raise self.make_error("offset")
        wall = parsed.replace(tzinfo=None)
        # Far outside the window anyway; shifting such a wall time by its offset could leave
        # Python's date range (year 1 at +01:00 is year 0 in UTC).
        if not EARLIEST - MAX_OFFSET < wall < LATEST_WALL:
            raise self.make_error("range")
        utc = wall - offset
        if not EARLIEST <= utc <= datetime.now(UTC).replace(tzinfo=None) + LATEST_AHEAD:
            raise self.make_error("range")
        return parsed


def _text(min_len: int, max_len: int, **kwargs: Any) -> StrictString:
    return StrictString(validate=validate.Length(min=min_len, max=max_len), **kwargs)


def _identifier(**kwargs: Any) -> StrictString:
    return StrictString(
        validate=FullRegexp(ID_PATTERN, error="Must be 1-128 characters from A-Z a-z 0-9 . _ : -."),
        **kwargs,
    )


def _one_of(enum: type[StrEnum], **kwargs: Any) -> StrictString:
    return StrictString(validate=validate.OneOf([member.value for member in enum]), **kwargs)


class _Strict(Schema):
    class Meta:
        unknown = EXCLUDE


class OrderSchema(_Strict):
    id = ShopifyId("Order", allow_none=True)
    name = _text(1, 255, allow_none=True)

    @validates_schema
    def _id_or_name(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("id") is None and data.get("name") is None:
            raise ValidationError("An order needs an id or a name.")

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> OrderRef:
        return OrderRef(gid=data.get("id"), name=data.get("name"))


class TrackingSchema(_Strict):
    number = _text(1, 255, required=True)
    url = fields.Url(
        schemes={"http", "https"},
        require_tld=False,
        allow_none=True,
        validate=validate.Length(max=2048),
        metadata={"description": "http or https URL"},
    )
    carrier = _text(1, 255, allow_none=True)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> Tracking:
        return Tracking(number=data["number"], url=data.get("url"), carrier=data.get("carrier"))


class ItemSchema(_Strict):
    line_item_id = ShopifyId("LineItem", required=True)
    quantity = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_INT32))
    reason_id = StrictInteger(
        required=True,
        validate=validate.Range(min=1, max=MAX_INT32),
        metadata={"description": "unknown ids are allowed and map to Other"},
    )
    reason = _text(0, 255, allow_none=True)
    customer_note = _text(0, 300, allow_none=True)

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> EventItem:
        return EventItem(
            line_item_gid=data["line_item_id"],
            quantity=data["quantity"],
            reason_id=data["reason_id"],
            reason=data.get("reason"),
            customer_note=data.get("customer_note"),
        )


class ReturnSchema(_Strict):
    id = _identifier(required=True)
    order = fields.Nested(OrderSchema, required=True)
    origin = _one_of(Origin, required=True)
    refund_method = _one_of(
        RefundMethod, metadata={"description": "required on return.requested and return.created"}
    )
    exchange_note = _text(0, 2000, allow_none=True)
    tracking = fields.Nested(TrackingSchema, allow_none=True)
    items = fields.List(
        fields.Nested(ItemSchema), required=True, validate=validate.Length(min=1, max=MAX_ITEMS)
    )

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> EventReturn:
        method = data.get("refund_method")
        return EventReturn(
            id=data["id"],
            order=data["order"],
            origin=Origin(data["origin"]),
            items=tuple(data["items"]),
            refund_method=RefundMethod(method) if method is not None else None,
            exchange_note=data.get("exchange_note"),
            tracking=data.get("tracking"),
        )


class EventSchema(_Strict):
    """The body of ``POST /v1/return-events``."""

    id = _identifier(required=True, metadata={"description": "equal to the webhook-id header"})
    type = _one_of(EventType, required=True)
    occurred_at = Rfc3339DateTime(required=True)
    shop = StrictString(
        required=True,
        validate=[
            validate.Length(max=255),
            FullRegexp(SHOP_PATTERN, error="Must be a Shopify shop domain (<name>.myshopify.com)."),
        ],
    )
    # The key is "return", a Python keyword, hence data_key.
    return_ = fields.Nested(ReturnSchema, required=True, data_key="return")

    @pre_load
    def _bounded_lists(self, data: Any, **kwargs: Any) -> Any:
        # Checked before any item is validated: 80,000 empty items would otherwise cost seconds
        # of CPU and an answer listing 80,000 errors.
        ret = data.get("return") if isinstance(data, dict) else None
        items = ret.get("items") if isinstance(ret, dict) else None
        if isinstance(items, list) and len(items) > MAX_ITEMS:
            raise ValidationError({"return": {"items": [f"Longer than maximum length {MAX_ITEMS}."]}})
        return data

    @validates_schema
    def _refund_method_where_needed(self, data: dict[str, Any], **kwargs: Any) -> None:
        # Runs after the nested post_load, so "return_" is an EventReturn when it validated.
        ret = data.get("return_")
        kind = data.get("type")
        if isinstance(ret, EventReturn) and kind is not None and EventType(kind).needs_refund_method:
            if ret.refund_method is None:
                raise ValidationError({"return": {"refund_method": [f"Required on {kind}."]}})

    @post_load
    def _build(self, data: dict[str, Any], **kwargs: Any) -> ReturnEvent:
        return ReturnEvent(
            id=data["id"],
            type=EventType(data["type"]),
            occurred_at=data["occurred_at"],
            shop=data["shop"],
            event_return=data["return_"],
        )


def flatten_errors(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """Marshmallow's nested error dict → ``{"return.items.0.quantity": ["..."]}`` (INGEST.md 422).

    Schema-level errors (``_schema``) belong to the object they were raised on, so they take the
    object's own path; at the top level that path is ``body``.
    """
    out: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            part = "" if key == "_schema" else str(key)
            path = ".".join(p for p in (prefix, part) if p)
            for sub_path, messages in flatten_errors(value, path).items():
                out.setdefault(sub_path, []).extend(messages)
    elif isinstance(errors, list) and all(isinstance(m, str) for m in errors):
        out[prefix or "body"] = list(errors)
    elif isinstance(errors, list):
        for item in errors:
            for sub_path, messages in flatten_errors(item, prefix).items():
                out.setdefault(sub_path, []).extend(messages)
    else:
        out[prefix or "body"] = [str(errors)]
    return out


_event_schema = EventSchema()


def load_event(body: Mapping[str, Any]) -> ReturnEvent:
    """The typed event of a parsed body, or ``InvalidEvent`` with the fields it breaks."""
    try:
        event: ReturnEvent = _event_schema.load(body)
    except ValidationError as exc:
        raise InvalidEvent(flatten_errors(exc.messages)) from None
    return event
