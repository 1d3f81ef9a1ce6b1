"""Shopify's cost-based rate limit: a leaky bucket per shop, plus the query cost estimate.

Cost model (an approximation of Shopify's, documented in README):
- a mutation root field costs 10;
- every object field costs 1, scalars and enums 0;
- a connection costs 2 + (first or last, default 10) x the cost of one node's selection;
- a plain list field of objects multiplies its element cost by its `first:` argument, else 10.
The requested cost is charged before execution and, as on Shopify, the actual cost (here: the
same figure, minus the unused part of connections) is what ends up deducted.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_composite_type,
)
from graphql.type.definition import GraphQLInterfaceType


class LeakyBucket:
    """Points drain with each request and refill at `rate` per second up to `size`."""

    def __init__(self, size: int = 2000, rate: float = 100) -> None:
        self.size = size
        self.rate = rate
        self._level = float(size)
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._level = min(float(self.size), self._level + (now - self._at) * self.rate)
        self._at = now

    def available(self) -> int:
        with self._lock:
            self._refill()
            return int(self._level)

    def configure(self, size: int | None = None, rate: float | None = None) -> None:
        with self._lock:
            self._refill()
            if size is not None:
                self.size = size
                self._level = min(self._level, float(size))
            if rate is not None:
                self.rate = rate

    def try_take(self, cost: int) -> tuple[bool, int, float]:
        """Take `cost` points if available. Returns (ok, points left, seconds until it would fit)."""
        with self._lock:
            self._refill()
            if cost <= self._level:
                self._level -= cost
                return True, int(self._level), 0.0
            wait = (cost - self._level) / self.rate if self.rate > 0 else math.inf
            return False, int(self._level), wait

    def refund(self, points: int) -> int:
        with self._lock:
            self._refill()
            self._level = min(float(self.size), self._level + points)
            return int(self._level)


def throttle_status(bucket: LeakyBucket, available: int | None = None) -> dict[str, Any]:
    rate = int(bucket.rate) if float(bucket.rate).is_integer() else bucket.rate
    return {
        "maximumAvailable": bucket.size,
        "currentlyAvailable": available if available is not None else bucket.available(),
        "restoreRate": rate,
    }


DEFAULT_PAGE = 10
LIST_FACTOR = 10


def query_cost(
    schema: GraphQLSchema, document: Any, operation: OperationDefinitionNode, variables: dict[str, Any]
) -> int:
    """Requested cost of one operation (see module docstring)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    if operation.operation.value == "mutation":
        root = schema.mutation_type
        top_fields = _fields(operation.selection_set, fragments)
        cost = 0
        for node in top_fields:
            field_def = root.fields.get(node.name.value) if root else None
            if field_def is None:
                continue
            cost += 10
        return cost
    root = schema.query_type
    return max(1, _selection_cost(schema, root, operation.selection_set, fragments, variables))


def _fields(
    selection_set: SelectionSetNode | None, fragments: dict[str, FragmentDefinitionNode]
) -> list[FieldNode]:
    out: list[FieldNode] = []
    if selection_set is None:
        return out
    for sel in selection_set.selections:
        if isinstance(sel, FieldNode):
            out.append(sel)
        elif isinstance(sel, InlineFragmentNode):
            out.extend(_fields(sel.selection_set, fragments))
        elif isinstance(sel, FragmentSpreadNode) and sel.name.value in fragments:
            out.extend(_fields(fragments[sel.name.value].selection_set, fragments))
    return out


def _arg_int(node: FieldNode, name: str, variables: dict[str, Any]) -> int | None:
    for arg in node.arguments or ():
        if arg.name.value != name:
            continue
        if isinstance(arg.value, IntValueNode):
            return int(arg.value.value)
        if isinstance(arg.value, VariableNode):
            value = variables.get(arg.value.name.value)
            return value if isinstance(value, int) else None
    return None


def _selection_cost(
    schema: GraphQLSchema,
    parent: Any,
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> int:
    total = 0
    for node in _fields(selection_set, fragments):
        name = node.name.value
        field_def = None
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            field_def = parent.fields.get(name)
        if field_def is None:
            # Fields of a union member or typename: no cost of their own, but look inside.
            if node.selection_set is not None:
                total += _selection_cost(schema, None, node.selection_set, fragments, variables)
            continue
        field_type = field_def.type
        named = get_named_type(field_type)
        if not is_composite_type(named):
            continue
        inner = _selection_cost(schema, named, node.selection_set, fragments, variables)
        if isinstance(parent, GraphQLObjectType) and parent.name.endswith("Connection"):
            # nodes/edges of a connection: the page size is already counted by the connection.
            total += inner if name in ("nodes", "edges") else 1 + inner
            continue
        if named.name.endswith("Connection"):
            page = _arg_int(node, "first", variables) or _arg_int(node, "last", variables)
            total += 2 + (page or DEFAULT_PAGE) * max(inner, 1)
        else:
            unwrapped = field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type
            factor = 1
            if isinstance(unwrapped, GraphQLList):
                factor = _arg_int(node, "first", variables) or LIST_FACTOR
            total += factor * (1 + inner)
    return total
