"""Data flows one way: the shared definitions and the serving layer stand on their own."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("batch_layer", "speed_layer", "serving_layer", "demo", "infra")


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
    [("feature_core", set()), ("serving_layer", {"serving_layer"})],
)
def test_a_package_imports_no_other_layer(package: str, allowed: set[str]) -> None:
    assert imported_packages(package) & set(LAYERS) - allowed == set()
