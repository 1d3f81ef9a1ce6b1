"""One Admin GraphQL request, end to end: auth, validation, variables, cost, execution, log.

Transport-free (server.py does HTTP), so tests and the benchmark can reason about it directly.
Error shapes follow Shopify (graphql-ruby) rather than graphql-core's wording.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLError,
    OperationDefinitionNode,
    execute,
    get_named_type,
    type_from_ast,
)
from graphql.language.location import get_location
from graphql.utilities import coerce_input_value

from standin import schema as schema_mod
from standin.apps import Grant
from standin.faults import FaultDecision
from standin.resolvers import RequestContext, default_resolver, type_resolver
from standin.state import Shop, Store
from standin.throttle import max_cost_error, query_cost, throttle_status

INVALID_TOKEN_BODY = {
    "errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"
}


@dataclass
class Response:
    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)
    fault: FaultDecision = field(default_factory=FaultDecision)

    def encoded(self) -> bytes:
        body = self.body if isinstance(self.body, str) else json.dumps(self.body, separators=(",", ":"))
        return body.encode()


def _log(
    shop: Shop,
    operation: str | None,
    root_fields: list[str],
    variables: Any,
    status: int,
    cost: int | None,
    throttled: bool,
    fault: str | None = None,
    **extra: Any,
) -> None:
    shop.calls.append(
        {
            "operation": operation,
            "root_fields": root_fields,
            "variables": variables,
            "status": status,
            "cost": cost,
            "throttled": throttled,
            "fault": fault,
            "at": time.time(),
            **extra,
        }
    )


# --- Validation error translation (graphql-core wording -> Shopify's) --------------------------

_RULES: list[tuple[re.Pattern[str], Any]] = [
    (
        re.compile(r"Cannot query field '(\w+)' on type '(\w+)'"),
        lambda m: (
            f"Field '{m[1]}' doesn't exist on type '{m[2]}'",
            {"code": "undefinedField", "typeName": m[2], "fieldName": m[1]},
        ),
    ),
    (
        re.compile(r"Unknown argument '(\w+)' on field '\w+\.(\w+)'"),
        lambda m: (
            f"Field '{m[2]}' doesn't accept argument '{m[1]}'",
            {"code": "argumentNotAccepted", "name": m[2], "typeName": "Field", "argumentName": m[1]},
        ),
    ),
    (
        re.compile(
            r"Field '(\w+)' argument '(\w+)' of type '.*' is required, but it was not "
            r"provided"
        ),
        lambda m: (
            f"Field '{m[1]}' is missing required arguments: {m[2]}",
            {"code": "missingRequiredArguments", "className": "Field", "name": m[1], "arguments": m[2]},
        ),
    ),
    (
        re.compile(r"Variable '\$(\w+)' is never used(?: in operation '(\w+)')?"),
        lambda m: (
            f"Variable ${m[1]} is declared by {m[2] or 'anonymous query'} but not used",
            {"code": "variableNotUsed", "variableName": m[1]},
        ),
    ),
    (
        re.compile(r"Variable '\$(\w+)' is not defined(?: by operation '(\w+)')?"),
        lambda m: (
            f"Variable ${m[1]} is used by {m[2] or 'anonymous query'} but not declared",
            {"code": "variableNotDefined", "variableName": m[1]},
        ),
    ),
    (
        re.compile(r"Unknown type '(\w+)'"),
        lambda m: (f"{m[1]} isn't a defined input type", {"code": "typeNotDefined", "typeName": m[1]}),
    ),
    (
        re.compile(r"Value '(.*)' does not exist in '(\w+)' enum"),
        lambda m: (
            f"Argument has an invalid value ({m[1]}). Expected type '{m[2]}'.",
            {"code": "argumentLiteralsIncompatible", "typeName": m[2]},
        ),
    ),
    (
        re.compile(r"Field '(\w+)' of type '(.*)' must have a selection of subfields"),
        lambda m: (
            f"Field must have selections (field '{m[1]}' returns {m[2]} but has no "
            f"selections. Did you mean '{m[1]} {{ ... }}'?)",
            {"code": "selectionMismatch", "nodeName": f"field '{m[1]}'", "typeName": m[2]},
        ),
    ),
]


def format_validation_error(error: GraphQLError) -> dict[str, Any]:
    out: dict[str, Any] = {"message": error.message}
    for pattern, build in _RULES:
        match = pattern.search(error.message)
        if match:
            out["message"], out["extensions"] = build(match)
            break
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if "extensions" not in out and error.message.startswith("Syntax Error"):
        out["message"] = "syntax error, " + error.message[len("Syntax Error: ") :].rstrip(".")
    return out


# --- Variable validation, graphql-ruby style (INVALID_VARIABLE with problems) -----------------

_ENUM_MISS = re.compile(r"Value '(.*)' does not exist in '(\w+)' enum")
_FIELD_MISSING = re.compile(r"Field '(\w+)' of required type '.*' was not provided")
_FIELD_UNKNOWN = re.compile(r"Field '(\w+)' is not defined by type '(\w+)'")
_SCALAR_BAD = re.compile(r"^(\w+) cannot represent")


def _explain(schema: Any, path: list[Any], value: Any, error: GraphQLError) -> tuple[list[Any], str]:
    message = error.message
    m = _ENUM_MISS.search(message)
    if m:
        enum = schema.get_type(m[2])
        names = ", ".join(enum.values) if isinstance(enum, GraphQLEnumType) else ""
        return path, f"Expected {json.dumps(value)} to be one of: {names}"
    m = _FIELD_MISSING.search(message)
    if m:
        return path + [m[1]], "Expected value to not be null"
    m = _FIELD_UNKNOWN.search(message)
    if m:
        return path + [m[1]], f"Field is not defined on {m[2]}"
    if "not to be null" in message:
        return path, "Expected value to not be null"
    m = _SCALAR_BAD.search(message)
    if m:
        return path, f"Could not coerce value {json.dumps(value)} to {m[1]}"
    return path, message.split(" Did you mean")[0]


def check_variables(
    schema: Any, operation: OperationDefinitionNode, source: str, variables: dict[str, Any]
) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    for var_def in operation.variable_definitions or ():
        name = var_def.variable.name.value
        var_type = type_from_ast(schema, var_def.type)
        if var_type is None:
            continue
        problems: list[dict[str, Any]] = []
        provided = name in variables
        value = variables.get(name)
        if not provided and var_def.default_value is not None:
            continue
        if value is None:
            if var_type.__class__.__name__ == "GraphQLNonNull":
                problems.append({"path": [], "explanation": "Expected value to not be null"})
        else:

            def on_error(
                path: list[Any], invalid: Any, error: GraphQLError, sink: list[dict[str, Any]] = problems
            ) -> None:
                p, explanation = _explain(schema, list(path), invalid, error)
                sink.append({"path": p, "explanation": explanation})

            coerce_input_value(value, var_type, on_error)
        if not problems:
            continue
        type_text = (
            source[var_def.type.loc.start : var_def.type.loc.end]
            if var_def.type.loc
            else str(get_named_type(var_type))
        )
        where = ", ".join(
            f"{'.'.join(str(x) for x in p['path'])} ({p['explanation']})" for p in problems if p["path"]
        )
        message = f"Variable ${name} of type {type_text} was provided invalid value"
        if where:
            message += f" for {where}"
        loc = get_location(var_def.loc.source, var_def.loc.start) if var_def.loc else None
        error: dict[str, Any] = {"message": message}
        if loc:
            error["locations"] = [{"line": loc.line, "column": loc.column}]
        error["extensions"] = {"code": "INVALID_VARIABLE", "value": value, "problems": problems}
        errors.append(error)
    return errors


def _count_objects(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_count_objects(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_objects(v) for v in value)
    return 0


# --- The request ----------------------------------------------------------------------------------


def authenticate(
    store: Store, domain: str | None, token: str | None
) -> tuple[Shop | None, Grant | None, Response | None]:
    """The shop and what the token may do there, or the answer that refuses it. Legacy tokens
    (shop.tokens) never expire; app-issued ones can be unknown, expired or revoked, and all
    three get the same 401 as a wrong token (APP-AUTH.md §5)."""
    shop = store.shop(domain) if domain else None
    if shop is None:
        return None, None, Response(404, {"errors": "Not Found"})
    if token and token in shop.tokens:
        return shop, Grant(scopes=frozenset(shop.tokens[token])), None
    grant, refused = store.apps.grant_for(shop.domain, token) if token else (None, "missing")
    if grant is None:
        _log(shop, None, [], None, 401, None, False, auth=refused)
        return None, None, Response(401, INVALID_TOKEN_BODY)
    return shop, grant, None


def handle_graphql(store: Store, shop: Shop, grant: Grant, version: str, raw_body: bytes) -> Response:
    """Everything after authentication. Fault injection is decided here (it needs to know
    whether the operation is a mutation) but carried out by the transport."""
    try:
        body = json.loads(raw_body or b"{}")
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ValueError
    except (ValueError, AttributeError):
        _log(shop, None, [], None, 400, None, False)
        return Response(400, {"errors": {"query": "Required parameter missing or invalid"}})
    variables = body.get("variables") or {}
    if not isinstance(variables, dict):
        variables = {}
    op_name = body.get("operationName")

    prepared = schema_mod.prepare(version, query)
    operation = prepared.operation(op_name)
    is_mutation = operation is not None and operation.operation.value == "mutation"
    decision = shop.faults.decide(is_mutation)
    if decision.delay_s > 0:
        time.sleep(decision.delay_s)
    op_label = op_name or (operation.name.value if operation and operation.name else None)
    root_fields = (
        [
            s.name.value
            for s in operation.selection_set.selections
            if hasattr(s, "name") and s.name is not None
        ]
        if operation
        else []
    )
    if decision.hang or decision.error:
        status = 0 if decision.hang else 503
        _log(
            shop, op_label, root_fields, variables, status, None, False, "hang" if decision.hang else "error"
        )
        return Response(503, {"errors": "Service Unavailable"}, fault=decision)

    schema = schema_mod.get_schema(version)
    bucket = shop.bucket
    if prepared.errors or operation is None:
        errors = [format_validation_error(e) for e in prepared.errors]
        if not errors:
            errors = [
                {
                    "message": "An operation name is required"
                    if prepared.document
                    else "No query string was present"
                }
            ]
        payload = {"errors": errors, "extensions": {"cost": _cost_block(0, 0, shop)}}
        _log(shop, op_label, root_fields, variables, 200, 0, False)
        return Response(200, payload, fault=decision)

    variable_errors = check_variables(schema, operation, query, variables)
    if variable_errors:
        _log(shop, op_label, root_fields, variables, 200, 0, False)
        return Response(200, {"errors": variable_errors}, fault=decision)

    requested = query_cost(schema, prepared.document, operation, variables, shop.cost_model)
    if requested > shop.max_query_cost:
        # Refused before execution and before the bucket is touched, as Shopify does.
        payload = {
            "errors": [max_cost_error(requested, shop.max_query_cost)],
            "extensions": {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": throttle_status(bucket),
                }
            },
        }
        _log(shop, op_label, root_fields, variables, 200, 0, False, refused="MAX_COST_EXCEEDED")
        return Response(200, payload, fault=decision)
    # A query dearer than the whole bucket could never run; charge at most the bucket size so
    # an over-estimate of ours does not lock a client out forever.
    charge = min(requested, bucket.size)
    ok, left, wait = bucket.try_take(charge)
    if not ok:
        payload = {
            "errors": [
                {
                    "message": "Throttled",
                    "extensions": {
                        "code": "THROTTLED",
                        "documentation": "https://shopify.dev/api/usage/rate-limits",
                    },
                }
            ],
            "extensions": {
                "cost": {
                    "requestedQueryCost": requested,
                    "actualQueryCost": None,
                    "throttleStatus": throttle_status(bucket, left),
                }
            },
        }
        if shop.throttle_mode == "http429":
            _log(shop, op_label, root_fields, variables, 429, requested, True)
            return Response(429, payload, {"Retry-After": str(max(1, math.ceil(wait)))}, fault=decision)
        _log(shop, op_label, root_fields, variables, 200, requested, True)
        return Response(200, payload, fault=decision)

    ctx = RequestContext(
        store=store, shop=shop, scopes=grant.scopes, client_id=grant.client_id, api_version=version
    )
    with shop.lock:
        result = execute(
            schema,
            prepared.document,
            context_value=ctx,
            variable_values=variables,
            operation_name=op_name,
            field_resolver=default_resolver,
            type_resolver=type_resolver,
        )
    payload: dict[str, Any] = {}
    if result.errors:
        payload["errors"] = [e.formatted for e in result.errors]
    payload["data"] = result.data
    actual = requested if is_mutation else max(1, _count_objects(result.data))
    actual = min(actual, charge)
    left = bucket.refund(charge - actual)
    payload["extensions"] = {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": throttle_status(bucket, left),
        }
    }
    _log(
        shop,
        op_label,
        root_fields,
        variables,
        200,
        actual,
        False,
        "lost_response" if decision.lose_response else None,
    )
    return Response(200, payload, fault=decision)


def _cost_block(requested: int, actual: int, shop: Shop) -> dict[str, Any]:
    return {
        "requestedQueryCost": requested,
        "actualQueryCost": actual,
        "throttleStatus": throttle_status(shop.bucket),
    }
