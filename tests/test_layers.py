"""The flow reads straight (ingest -> store -> queue -> apply -> Shopify client): no module reaches
up or around another's back. Checked on the import statements themselves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str) -> dict[str, set[str]]:
    """Every module of ``package`` -> the modules it imports (at any depth, lazily or not)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def reaching(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    offenders: dict[str, list[str]] = {}
    for module, names in imported_modules(package).items():
        bad = sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))
        if bad:
            offenders[module] = bad
    return offenders


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        # The sync's logic knows nothing of the web process or of Celery tasks.
        ("workers", ("web", "tasks")),
        # The store is the bottom layer: no Shopify client, no apply run, no lock session.
        ("workers/store", ("workers.shopify", "workers.apply", "workers.locking", "workers.doorbell")),
        # The Shopify client takes an endpoint and a token, not our rows or runs.
        ("workers/shopify", ("workers.apply", "workers.store.shops", "workers.store.returns")),
        # Configuration is read, never reads back.
        ("config", ("workers", "web", "tasks")),
    ],
)
def test_no_layer_reaches_up(package: str, forbidden: tuple[str, ...]) -> None:
    assert reaching(package, forbidden) == {}


def test_only_config_reads_the_environment() -> None:
    readers = [
        str(path.relative_to(ROOT))
        for package in ("web", "tasks", "workers")
        for path in (ROOT / package).rglob("*.py")
        if "os.environ" in path.read_text() or "getenv(" in path.read_text()
    ]
    assert readers == []
