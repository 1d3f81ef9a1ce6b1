"""Several mutations in one document: one round trip instead of one per mutation.

GraphQL runs the root fields of a mutation document one after the other, in order, and Shopify
answers each field on its own (its payload, its ``userErrors``) and charges their costs summed.
So mutations that do not need each other's results (the tracking, the tag, the note and the close
of a return) go out together. The document is composed from the single-mutation documents of
``workers.shopify.documents`` (each validated against the pinned schemas) by renaming: field *i*
is aliased ``m<i>`` and its variables prefixed ``m<i>_``; fragments are shared. The composed text
depends only on which documents are combined, in which order, so it is cached and the same few
texts recur (the stand-in's and Shopify's validation caches hit).

What the whole document's outcome is (answered, lost, throttled) is the client's business as for
any request: a lost answer is ``OutcomeUnknown`` for all of its fields at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableDefinitionNode,
    VariableNode,
    Visitor,
    parse,
    print_ast,
    visit,
)


@dataclass(frozen=True)
class Composed:
    document: str
    operation: str
    # Per part: its alias in the answer and its variables' new names (old name -> new name).
    aliases: tuple[str, ...]
    renames: tuple[dict[str, str], ...]

    def variables(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for rename, values in zip(self.renames, parts, strict=True):
            for old, value in values.items():
                merged[rename[old]] = value
        return merged


class _Rename(Visitor):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def enter_variable(self, node: VariableNode, *_: Any) -> VariableNode:
        return VariableNode(name=NameNode(value=self.prefix + node.name.value))


def _operation(document: DocumentNode) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation.value != "mutation":
        raise ValueError("each part must be a document with exactly one mutation")
    return operations[0]


@lru_cache(maxsize=128)
def compose(documents: tuple[str, ...]) -> Composed:
    """One mutation document running each of ``documents``' mutations in turn."""
    if not documents:
        raise ValueError("nothing to compose")
    variable_defs: list[VariableDefinitionNode] = []
    fields: list[FieldNode] = []
    fragments: dict[str, FragmentDefinitionNode] = {}
    aliases: list[str] = []
    renames: list[dict[str, str]] = []
    names: list[str] = []
    for index, text in enumerate(documents):
        parsed = parse(text)
        operation = _operation(parsed)
        names.append(operation.name.value if operation.name else "Mutation")
        prefix = f"m{index}_"
        renamed = visit(operation, _Rename(prefix))
        rename = {
            d.variable.name.value: prefix + d.variable.name.value for d in operation.variable_definitions
        }
        variable_defs.extend(renamed.variable_definitions)
        roots = [s for s in renamed.selection_set.selections if isinstance(s, FieldNode)]
        if len(roots) != 1:
            raise ValueError("each part must have exactly one root field")
        alias = f"m{index}"
        root = roots[0]
        fields.append(
            FieldNode(
                alias=NameNode(value=alias),
                name=root.name,
                arguments=root.arguments,
                directives=root.directives,
                selection_set=root.selection_set,
            )
        )
        for definition in parsed.definitions:
            if isinstance(definition, FragmentDefinitionNode):
                fragments.setdefault(definition.name.value, definition)
        aliases.append(alias)
        renames.append(rename)
    operation_name = "Batch" + "".join(dict.fromkeys(names))
    combined = DocumentNode(
        definitions=(
            OperationDefinitionNode(
                operation=_operation(parse(documents[0])).operation,
                name=NameNode(value=operation_name),
                variable_definitions=tuple(variable_defs),
                directives=(),
                selection_set=SelectionSetNode(selections=tuple(fields)),
            ),
            *fragments.values(),
        )
    )
    return Composed(print_ast(combined), operation_name, tuple(aliases), tuple(renames))
