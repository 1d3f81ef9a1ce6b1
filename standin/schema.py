"""Shopify Admin schemas: built lazily per API version, and documents validated once per text.

Building one SDL takes ~2.5 s, so each version is built on first use and kept for the life of the
process. Parsing + validating a document costs ~2 ms, so results are cached by (version, text):
the sync sends the same handful of documents over and over.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OverlappingFieldsCanBeMergedRule,
    build_schema,
    parse,
    specified_rules,
    validate,
)

# The shared folder sits next to the repository (../shared), wherever it was cloned.
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "shared" / "shopify" / "schema"
if not SCHEMA_DIR.is_dir():  # the project machine's fixed place for it
    SCHEMA_DIR = Path("/work/shared/shopify/schema")
# The schema files we ship with, oldest first. Any other version maps to the nearest one at or
# below it (older versions map to the oldest): the stand-in answers every dated version, as
# Shopify does for supported ones, without pretending to know schema differences it has no file for.
KNOWN_VERSIONS: tuple[str, ...] = ("2026-04", "2026-07")

_lock = threading.Lock()
_schemas: dict[str, GraphQLSchema] = {}


def resolve_version(version: str) -> str:
    """Pick the schema file used for a requested API version (e.g. 2025-01 -> 2026-04)."""
    chosen = KNOWN_VERSIONS[0]
    for known in KNOWN_VERSIONS:
        if known <= version:
            chosen = known
    return chosen


def get_schema(version: str) -> GraphQLSchema:
    """The built schema for a version; built once (thread-safe) and cached."""
    key = resolve_version(version)
    schema = _schemas.get(key)
    if schema is not None:
        return schema
    with _lock:
        schema = _schemas.get(key)
        if schema is None:
            sdl = (SCHEMA_DIR / f"admin-{key}.graphql").read_text()
            # assume_valid: Shopify's SDL breaks a rule newer graphql-core versions check; the
            # schema is the real one, so re-checking it would only cost time.
            schema = build_schema(sdl, assume_valid=True, no_location=True)
            from standin.resolvers import install_resolvers

            install_resolvers(schema)
            _schemas[key] = schema
    return schema


@dataclass(frozen=True)
class PreparedDocument:
    """A parsed document with its validation outcome, shared between requests."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]

    def operation(self, name: str | None) -> OperationDefinitionNode | None:
        if self.document is None:
            return None
        ops = [d for d in self.document.definitions if isinstance(d, OperationDefinitionNode)]
        if name:
            return next((op for op in ops if op.name and op.name.value == name), None)
        return ops[0] if len(ops) == 1 else None


# graphql-ruby (Shopify) accepts same-named fields of different types in sibling fragments on
# different concrete types (e.g. `status` on Return and on ReverseFulfillmentOrder under `node`);
# graphql-core's OverlappingFieldsCanBeMerged rejects them, so that rule is left out.
_RULES = tuple(rule for rule in specified_rules if rule is not OverlappingFieldsCanBeMergedRule)


@lru_cache(maxsize=2048)
def prepare(version: str, text: str) -> PreparedDocument:
    """Parse and validate a document against the version's schema (cached by text)."""
    schema = get_schema(version)
    try:
        document = parse(text)
    except GraphQLError as error:
        return PreparedDocument(None, (error,))
    errors = validate(schema, document, _RULES)
    return PreparedDocument(document, tuple(errors))
