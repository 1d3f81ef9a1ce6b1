"""Every document the sync sends is valid against the pinned Admin API schemas, and follows the rules
that come from Shopify (named operations, notifyCustomer false, returnCreate takes returnInput)."""

from __future__ import annotations

import pytest
from graphql import GraphQLSchema, OperationDefinitionNode, parse, validate
from graphql.language import ArgumentNode, BooleanValueNode, FieldNode, visit
from graphql.language.visitor import Visitor

from workers.shopify import documents

DOCUMENTS = sorted(documents.ALL_DOCUMENTS.items())


def _operation(text: str) -> OperationDefinitionNode:
    operations = [d for d in parse(text).definitions if isinstance(d, OperationDefinitionNode)]
    assert len(operations) == 1
    return operations[0]


@pytest.mark.parametrize(("name", "text"), DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_document_validates_against_2026_07(schema_2026_07: GraphQLSchema, name: str, text: str) -> None:
    errors = validate(schema_2026_07, parse(text))
    assert errors == [], [error.message for error in errors]


@pytest.mark.parametrize(("name", "text"), DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_document_validates_against_2026_04(schema_2026_04: GraphQLSchema, name: str, text: str) -> None:
    errors = validate(schema_2026_04, parse(text))
    assert errors == [], [error.message for error in errors]


@pytest.mark.parametrize(("name", "text"), DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_every_document_is_one_named_operation(name: str, text: str) -> None:
    operation = _operation(text)
    assert operation.name is not None and operation.name.value[0].isupper()


def test_operation_names_are_unique() -> None:
    names = [_operation(text).name.value for _, text in DOCUMENTS]
    assert len(names) == len(set(names))


def _notify_arguments(text: str) -> list[tuple[str, ArgumentNode]]:
    found: list[tuple[str, ArgumentNode]] = []

    class Finder(Visitor):
        def enter_field(self, node: FieldNode, *_args: object) -> None:
            for argument in node.arguments or ():
                if argument.name.value == "notifyCustomer":
                    found.append((node.name.value, argument))

    visit(parse(text), Finder())
    return found


def test_every_mutation_field_with_notify_customer_sends_false(schema_2026_07: GraphQLSchema) -> None:
    mutation_type = schema_2026_07.mutation_type
    assert mutation_type is not None
    for _, text in DOCUMENTS:
        operation = _operation(text)
        if operation.operation.value != "mutation":
            continue
        sent = dict(_notify_arguments(text))
        for selection in operation.selection_set.selections:
            assert isinstance(selection, FieldNode)
            field = mutation_type.fields[selection.name.value]
            if "notifyCustomer" in field.args:
                argument = sent.get(selection.name.value)
                assert argument is not None, f"{selection.name.value} must send notifyCustomer: false"
                assert isinstance(argument.value, BooleanValueNode) and argument.value.value is False


def test_return_create_takes_return_input() -> None:
    assert "returnCreate(returnInput: $returnInput)" in documents.RETURN_CREATE
