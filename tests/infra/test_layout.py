"""Data flows one way, and the core knows no workload."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("batch_layer", "speed_layer", "serving_layer", "demo", "infra")
#: Words of the demo shop's schema: the core must work for any team's events.
SHOP_WORDS = ("user_id", "item_id", "event_type", "add_to_cart", "purchase", "amount", "shop")


def imported_packages(package: str) -> set[str]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
    return found


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("feature_core", set()),
        ("runtime", set()),
        ("online_store", set()),
        ("serving_layer", {"serving_layer"}),
        ("batch_layer", {"batch_layer"}),
        ("speed_layer", {"speed_layer"}),
    ],
)
def test_a_package_imports_no_other_layer_and_no_infra(package: str, allowed: set[str]) -> None:
    assert imported_packages(package) & set(LAYERS) - allowed == set()


@pytest.mark.parametrize("package", ["batch_layer", "speed_layer", "serving_layer", "demo"])
def test_layers_reach_the_views_through_the_online_store_only(package: str) -> None:
    assert "redis" not in imported_packages(package)


@pytest.mark.parametrize("package", ["feature_core", "runtime", "online_store"])
def test_the_core_mentions_no_workload(package: str) -> None:
    pattern = re.compile("|".join(rf"\b{re.escape(w)}" for w in SHOP_WORDS), re.IGNORECASE)
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert found == []


def _kind_names() -> set[str]:
    from feature_core.aggregations import KINDS, PRIMITIVES

    return set(KINDS) | set(PRIMITIVES)


@pytest.mark.parametrize(
    "package",
    ["feature_core", "batch_layer", "speed_layer", "serving_layer", "online_store", "infra"],
)
def test_no_code_outside_the_aggregations_package_dispatches_on_a_kind_name(package: str) -> None:
    """Engines ask the registry's classes for their forms: a comparison of anything with an
    aggregation or primitive name (``kind == "last"``, ``name in ("min", "max")``) would be an
    if-chain a new kind has to extend."""
    names = _kind_names()
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if "aggregations" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            literals = []
            for operand in [node.left, *node.comparators]:
                if isinstance(operand, ast.Constant):
                    literals.append(operand.value)
                elif isinstance(operand, (ast.Tuple, ast.List, ast.Set)):
                    literals += [e.value for e in operand.elts if isinstance(e, ast.Constant)]
            if names & {v for v in literals if isinstance(v, str)}:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
