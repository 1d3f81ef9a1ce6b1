"""``/openapi.json``, generated from the marshmallow schemas so the document cannot drift from them."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from web.schemas import AcceptedSchema, ErrorSchema, ReturnStatusSchema, ValidationErrorsSchema
from workers.events import ID_PATTERN, SHOP_PATTERN, EventSchema


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": "Error"}}, **extra}


_RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}


def build_spec() -> APISpec:
    spec = APISpec(
        title="returnsync ingest",
        version="1.0.0",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Return events from the returns platform (INGEST.md) and return sync status."},
    )
    spec.components.schema("Event", schema=EventSchema)
    spec.components.schema("Accepted", schema=AcceptedSchema)
    spec.components.schema("Error", schema=ErrorSchema)
    spec.components.schema("ValidationErrors", schema=ValidationErrorsSchema)
    spec.components.schema("ReturnStatus", schema=ReturnStatusSchema)
    spec.components.security_scheme("statusToken", {"type": "http", "scheme": "bearer"})

    def header(name: str, description: str, **schema: Any) -> dict[str, Any]:
        return {
            "in": "header",
            "name": name,
            "required": True,
            "description": description,
            "schema": {"type": "string", **schema},
        }

    spec.path(
        path="/v1/return-events",
        operations={
            "post": {
                "summary": "Receive one return event (Standard Webhooks signed)",
                "operationId": "receiveReturnEvent",
                "parameters": [
                    header("webhook-id", "the event id, equal to the body's id", pattern=ID_PATTERN),
                    header("webhook-timestamp", "unix seconds when sent; at most 5 minutes off"),
                    header("webhook-signature", "space-separated v1,<base64 HMAC-SHA256> signatures"),
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": "Event"}},
                },
                "responses": {
                    "202": {
                        "description": "stored durably, to be applied",
                        "content": {"application/json": {"schema": "Accepted"}},
                    },
                    "200": {
                        "description": "the same id with the same content was already stored",
                        "content": {"application/json": {"schema": "Accepted"}},
                    },
                    "400": _error("the body is not a JSON object"),
                    "401": _error("signature or timestamp missing, invalid or out of tolerance"),
                    "409": _error("the same id was stored with different content"),
                    "413": _error("body over the size limit (256 KiB)"),
                    "415": _error("not application/json"),
                    "422": {
                        "description": "a field breaks the contract, or the shop is unknown",
                        "content": {"application/json": {"schema": "ValidationErrors"}},
                    },
                    "503": _error("the event cannot be stored durably right now", headers=_RETRY_AFTER),
                },
            }
        },
    )
    spec.path(
        path="/v1/returns/{shop}/{return_id}",
        operations={
            "get": {
                "summary": "Where a return stands in the sync to Shopify",
                "operationId": "getReturnStatus",
                "security": [{"statusToken": []}],
                "parameters": [
                    {
                        "in": "path",
                        "name": "shop",
                        "required": True,
                        "schema": {"type": "string", "pattern": SHOP_PATTERN},
                    },
                    {
                        "in": "path",
                        "name": "return_id",
                        "required": True,
                        "schema": {"type": "string", "pattern": ID_PATTERN},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the return is known",
                        "content": {"application/json": {"schema": "ReturnStatus"}},
                    },
                    "401": _error("token missing or wrong"),
                    "404": _error("no event of that return was ever accepted"),
                    "503": _error("the status cannot be read right now", headers=_RETRY_AFTER),
                },
            }
        },
    )
    return spec
