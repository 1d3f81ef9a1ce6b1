"""Marshmallow schemas of the ingest service's answers, for ``/openapi.json``.

The request body's schema is the domain's (``workers.events.EventSchema``): the workers read
stored events with the same one.
"""

from __future__ import annotations

from enum import StrEnum

from marshmallow import Schema, fields, validate

from workers.statuses import EventStatus, EventType, ReturnState, SyncState


def _values(enum: type[StrEnum]) -> list[str]:
    return [member.value for member in enum]


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
    type = fields.String(required=True, validate=validate.OneOf(_values(EventType)))
    status = fields.String(required=True, validate=validate.OneOf(_values(EventStatus)))


class ReturnStatusSchema(Schema):
    shop = fields.String(required=True)
    return_id = fields.String(required=True)
    order = fields.Nested(StatusOrderSchema, required=True)
    state = fields.String(
        allow_none=True,
        required=True,
        validate=validate.OneOf(_values(ReturnState)),
    )
    sync = fields.String(
        required=True,
        validate=validate.OneOf(_values(SyncState)),
    )
    detail = fields.String(allow_none=True, required=True)
    shopify = fields.Nested(StatusShopifySchema, required=True)
    events = fields.List(fields.Nested(StatusEventSchema), required=True)
