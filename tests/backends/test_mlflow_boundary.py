"""MLflow is reached only through watcher/backends/: elsewhere, code goes through the ports
(Registry, ModelArtifacts), so the fakes' contract tests cover every path."""

from __future__ import annotations

import ast
from pathlib import Path

WATCHER = Path(__file__).resolve().parents[2] / "watcher"


def _mlflow_uses(path: Path) -> list[str]:
    """Lines that import mlflow, reach for an adapter's raw client or translate its errors."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute) and node.attr == "client":
            names = [ast.unparse(node)]
        if any(
            n == "mlflow"
            or n.startswith("mlflow.")
            or n.endswith("translate_errors")
            or n.endswith("registry.client")
            for n in names
        ):
            found.append(f"{path.relative_to(WATCHER)}:{getattr(node, 'lineno', '?')}")
    return found


def test_only_backends_touch_mlflow() -> None:
    outside = [
        p for p in sorted(WATCHER.rglob("*.py")) if p.relative_to(WATCHER).parts[0] != "backends"
    ]
    assert [] == [use for p in outside for use in _mlflow_uses(p)]


def test_the_check_sees_a_raw_client() -> None:
    """The check itself finds what it looks for (in a backend, where it is allowed)."""
    uses = _mlflow_uses(WATCHER / "backends" / "mlflow_models.py")
    assert any("mlflow_models.py" in u for u in uses)
