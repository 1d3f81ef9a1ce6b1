"""Marshmallow schemas of the ingest contract (/work/shared/spec/INGEST.md) and of its responses.

The request schemas validate; they do not shape what is stored. Unknown fields are EXCLUDE'd from
the validated result only: the endpoint stores the whole parsed body, so a producer can add fields
without breaking this system and nothing it sent is lost.

Marshmallow is lenient where the contract is not (``True`` is an ``Integral``, ``"1"`` and ``1.0``
pass ``Integer`` without ``strict``, ``$`` in a regex matches before a trailing newline), so the
fields below are strict on purpose. The same schemas generate ``/openapi.json``.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

# Written with ``$`` so /openapi.json carries them as valid JSON Schema patterns; they are applied
# with fullmatch (FullRegexp), because ``re.match`` and ``$`` would accept a trailing newline.
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
SHOP_PATTERN = r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$"
EVENT_TYPES = ("return.requested", "return.created", "return.completed", "return.cancelled")
ORIGINS = (
    "return_portal",
    "return_portal_request",
    "return_portal_no_outbound",
    "manual_order_return",
    "label_in_the_box",
)
REFUND_METHODS = ("exchange", "refund", "store_credit")
# Events of these types create the Shopify return, which needs the refund-method tag.
TYPES_NEEDING_REFUND_METHOD = ("return.requested", "return.created")
MAX_ITEMS = 250
# Counts and reason ids end up in Postgres integer columns and Shopify Int arguments (32-bit).
MAX_INT32 = 2**31 - 1
# Shopify ids are 64-bit; a longer digit string cannot be a real id.
MAX_SHOPIFY_ID = 2**63 - 1

_RFC3339 = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)


class FullRegexp(validate.Regexp):
    """``Regexp`` that must match the whole string: ``"evt_1\\n"`` is not a valid id."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
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
    """RFC 3339 date-time with a mandatory offset (``Z`` or ``±hh:mm``); naive times are ambiguous."""

    default_error_messages = {
        "invalid": "Must be an RFC 3339 date-time with an offset, e.g. 2026-11-29T10:15:00Z."
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
        if parsed.utcoffset() is None or abs(parsed.utcoffset().total_seconds()) >= 24 * 3600:
            raise self.make_error("invalid")
        return parsed


def _text(min_len: int, max_len: int, **kwargs: Any) -> StrictString:
    return StrictString(validate=validate.Length(min=min_len, max=max_len), **kwargs)


def _identifier(**kwargs: Any) -> StrictString:
    return StrictString(
        validate=FullRegexp(ID_PATTERN, error="Must be 1-128 characters from A-Z a-z 0-9 . _ : -."),
        **kwargs,
    )


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


class ReturnSchema(_Strict):
    id = _identifier(required=True)
    order = fields.Nested(OrderSchema, required=True)
    origin = StrictString(required=True, validate=validate.OneOf(ORIGINS))
    refund_method = StrictString(
        validate=validate.OneOf(REFUND_METHODS),
        metadata={"description": "required on return.requested and return.created"},
    )
    exchange_note = _text(0, 2000, allow_none=True)
    tracking = fields.Nested(TrackingSchema, allow_none=True)
    items = fields.List(
        fields.Nested(ItemSchema), required=True, validate=validate.Length(min=1, max=MAX_ITEMS)
    )


class EventSchema(_Strict):
    """The body of ``POST /v1/return-events``."""

    id = _identifier(required=True, metadata={"description": "equal to the webhook-id header"})
    type = StrictString(required=True, validate=validate.OneOf(EVENT_TYPES))
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

    @validates_schema
    def _refund_method_where_needed(self, data: dict[str, Any], **kwargs: Any) -> None:
        ret = data.get("return_") or {}
        if data.get("type") in TYPES_NEEDING_REFUND_METHOD and ret.get("refund_method") is None:
            raise ValidationError({"return": {"refund_method": [f"Required on {data['type']}."]}})


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


def validate_event(body: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
    """Validate a parsed body. Returns (event, {}) or (None, field errors).

    The event is the validated, normalised view (ids as GIDs, ``occurred_at`` as datetime, the
    ``return`` key kept as ``return``); unknown fields are not in it.
    """
    try:
        loaded = _event_schema.load(body)
    except ValidationError as exc:
        return None, flatten_errors(exc.messages)
    loaded["return"] = loaded.pop("return_")
    return loaded, {}


# --- response bodies (documentation in /openapi.json; the handlers build plain dicts) ---


class AcceptedSchema(Schema):
    id = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("accepted", "duplicate")))


class ErrorSchema(Schema):
    error = fields.String(required=True)


class ValidationErrorsSchema(Schema):
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        required=True,
        metadata={"description": "dotted field path (e.g. return.items.0.quantity) → messages"},
    )


class StatusOrderSchema(Schema):
    id = fields.String(allow_none=True, required=True)
    name = fields.String(allow_none=True, required=True)


class StatusShopifySchema(Schema):
    return_id = fields.String(allow_none=True, required=True)
    status = fields.String(allow_none=True, required=True)


class StatusEventSchema(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    status = fields.String(
        required=True,
        validate=validate.OneOf(
            ("accepted", "applied", "superseded", "waiting", "rejected", "conflict", "failed")
        ),
    )


class ReturnStatusSchema(Schema):
    shop = fields.String(required=True)
    return_id = fields.String(required=True)
    order = fields.Nested(StatusOrderSchema, required=True)
    state = fields.String(
        allow_none=True,
        required=True,
        validate=validate.OneOf(("requested", "created", "completed", "cancelled")),
    )
    sync = fields.String(
        required=True,
        validate=validate.OneOf(("synced", "pending", "waiting", "rejected", "conflict", "failed")),
    )
    detail = fields.String(allow_none=True, required=True)
    shopify = fields.Nested(StatusShopifySchema, required=True)
    events = fields.List(fields.Nested(StatusEventSchema), required=True)
