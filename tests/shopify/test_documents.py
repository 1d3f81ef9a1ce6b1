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


# Mutations a run sends together (workers/apply: after a create or an approval, the return's
# remaining steps go out in one document).
BATCHABLE = [
    documents.REVERSE_DELIVERY_CREATE_WITH_SHIPPING,
    documents.TAGS_ADD,
    documents.TAGS_REMOVE,
    documents.ORDER_UPDATE_NOTE,
    documents.RETURN_CLOSE,
    documents.RETURN_CANCEL,
    documents.RETURN_APPROVE_REQUEST,
    documents.RETURN_CREATE,
    documents.RETURN_REQUEST,
]


@pytest.mark.parametrize("size", [2, 3, 4])
def test_composed_mutation_documents_validate_against_both_versions(
    schema_2026_07: GraphQLSchema, schema_2026_04: GraphQLSchema, size: int
) -> None:
    import itertools

    from workers.shopify.batch import compose

    for parts in (
        itertools.permutations(BATCHABLE, size) if size == 2 else itertools.combinations(BATCHABLE, size)
    ):
        composed = compose(tuple(parts))
        for schema in (schema_2026_07, schema_2026_04):
            errors = validate(schema, parse(composed.document))
            assert errors == [], (composed.operation, [error.message for error in errors])
        # Every part's notifyCustomer: false survives the composition.
        assert len(_notify_arguments(composed.document)) == sum(len(_notify_arguments(p)) for p in parts)


def test_a_part_used_twice_gets_its_own_variables() -> None:
    from workers.shopify.batch import compose

    composed = compose((documents.TAGS_ADD, documents.TAGS_ADD))
    merged = composed.variables([{"id": "a", "tags": ["x"]}, {"id": "b", "tags": ["y"]}])
    assert merged == {"m0_id": "a", "m0_tags": ["x"], "m1_id": "b", "m1_tags": ["y"]}
    assert composed.aliases == ("m0", "m1")
