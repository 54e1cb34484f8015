"""The architecture the README draws, checked on the imports and sizes of the code itself.

Layers, bottom up: the shared kernel (errors, durations, ports, config), `runtime` (the
daemon's machinery), `backends` (adapters: the only code that talks MLflow or Airflow),
the features (data, trigger, monitor, rollback, drift), then `app` (the one wiring
module) and `cli` on top. An import may only point down or sideways as listed here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WATCHER = ROOT / "watcher"

KERNEL = {"errors", "durations", "ports", "config", "extras"}
FEATURES = {"data", "trigger", "monitor", "rollback", "drift"}
# What each part of watcher/ may import from watcher/ (besides itself and the pure core).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "durations": {"errors"},
    "ports": {"errors"},
    "config": {"errors", "durations", "ports"},
    "extras": {"errors", "config"},
    "runtime": KERNEL,
    "backends": KERNEL | {"runtime"},
    "trigger": KERNEL | {"runtime"},
    "data": KERNEL | {"runtime", "trigger"},  # the data side enqueues into the trigger outbox
    "monitor": KERNEL | {"runtime", "data"},  # the evaluator watches its dir like the data
    "rollback": KERNEL | {"runtime"},
    "drift": KERNEL | {"runtime"},
    "testing": KERNEL | {"runtime"},
    "app": KERNEL | {"runtime", "backends"} | FEATURES,
    "cli": KERNEL | {"runtime", "backends", "app"} | FEATURES,
}
# Pure core: decisions without I/O, importable from every layer; it imports only itself.
PURE = {
    "watcher/monitor/policy.py",
    "watcher/monitor/reports.py",
    "watcher/monitor/promql.py",
    "watcher/rollback/policy.py",
    "watcher/drift/stats.py",
    "watcher/durations.py",
}
PURE_MODULES = {rel.removesuffix(".py").replace("/", ".") for rel in PURE}
IO_MODULES = {"sqlite3", "socket", "subprocess", "httpx", "mlflow", "watchdog", "threading"}

# Size limits (issue #16): a class over 250 lines or a function over 60 needs a reason here.
MAX_CLASS, MAX_FUNCTION = 250, 60
EXCEPTIONS = {
    # One declaration per metric, in the order /metrics serves them: splitting it would
    # scatter the catalogue the README's metrics table mirrors.
    "watcher/runtime/metrics.py:Metrics.__init__",
}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(WATCHER.rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), path


def _part(rel: str) -> str:
    """watcher/monitor/poll.py → monitor; watcher/app.py → app."""
    parts = rel.split("/")
    return parts[1] if len(parts) > 2 else parts[1].removesuffix(".py")


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every imported module name, type-checking-only imports included (they still couple)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            if node.module == "watcher":  # from watcher import x: x is the module
                for alias in node.names:
                    yield node.lineno, f"watcher.{alias.name}"
        elif isinstance(node, ast.Call) and _is_import_module(node.func):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                yield node.lineno, arg.value  # a lazy import couples as much as an eager one


def _is_import_module(func: ast.expr) -> bool:
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("import_module", "__import__")


def test_no_relative_imports() -> None:
    """Absolute imports only, so the layer rules below see every edge."""
    relative = [
        f"{rel}:{node.lineno}"
        for rel, path in _modules()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.level > 0
    ]
    assert not relative, relative


def test_imports_point_down_the_layers() -> None:
    wrong = []
    for rel, path in _modules():
        part = _part(rel)
        if part == "__init__":
            continue
        allowed = ALLOWED[part] | {part}
        for line, name in _imports(path):
            if name.startswith("watcher.") and name not in PURE_MODULES:
                target = name.split(".")[1]
                if target not in allowed and target != "__version__":
                    wrong.append(f"{rel}:{line} ({part}) imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_daemon_never_imports_airflow() -> None:
    """It talks to Airflow over REST (MLflow only from backends/: tests/backends)."""
    wrong = [
        f"{rel}:{line} imports {name}"
        for rel, path in _modules()
        for line, name in _imports(path)
        if name.split(".")[0] == "airflow"
    ]
    assert not wrong, "\n".join(wrong)


def test_alerts_and_pipeline_do_not_import_the_daemon() -> None:
    wrong = []
    for folder in ("alerts", "pipeline", "dags"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, name in _imports(path):
                if name.split(".")[0] == "watcher":
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("rel", sorted(PURE))
def test_pure_core_does_no_io(rel: str) -> None:
    names = {name.split(".")[0] for _, name in _imports(ROOT / rel)}
    assert not names & IO_MODULES, f"{rel} imports {sorted(names & IO_MODULES)}"
    watcher_modules = {name for _, name in _imports(ROOT / rel) if name.startswith("watcher.")}
    kernel = PURE_MODULES | {"watcher.errors", "watcher.ports"}
    assert watcher_modules <= kernel, f"{rel} imports {watcher_modules}"


def _sized(path: Path) -> Iterator[tuple[str, str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    stack: list[tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                kind = "class" if isinstance(child, ast.ClassDef) else "function"
                yield kind, name, (child.end_lineno or child.lineno) - child.lineno + 1
                stack.append((child, name + "."))
            else:
                stack.append((child, prefix))


def test_classes_and_functions_stay_small() -> None:
    big = []
    for rel, path in _modules():
        for kind, name, lines in _sized(path):
            limit = MAX_CLASS if kind == "class" else MAX_FUNCTION
            if lines > limit and f"{rel}:{name}" not in EXCEPTIONS:
                big.append(f"{rel}:{name} is a {lines}-line {kind} (limit {limit})")
    assert not big, "\n".join(big)


def test_size_exceptions_are_still_needed() -> None:
    sizes = {f"{rel}:{name}": lines for rel, path in _modules() for _, name, lines in _sized(path)}
    stale = [e for e in sorted(EXCEPTIONS) if sizes.get(e, 0) <= MAX_FUNCTION]
    assert not stale, f"no longer over the limit, drop from EXCEPTIONS: {stale}"


def test_adapters_are_built_only_in_app_and_cli() -> None:
    """`app.py` wires the daemon; the CLI context builds the one registry of a command."""
    wrong = []
    for rel, path in _modules():
        if _part(rel) in {"app", "cli", "testing"} or rel.startswith("watcher/backends/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"MlflowRegistry", "AirflowTrigger", "LocalTrigger"}
            ):
                wrong.append(f"{rel}:{node.lineno} builds {node.func.id}")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_cli_or_the_wiring() -> None:
    wrong = []
    for rel, path in _modules():
        if _part(rel) in {"cli", "app"}:
            continue
        for line, name in _imports(path):
            if name.startswith(("watcher.cli", "watcher.app")):
                wrong.append(f"{rel}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


# The [pipeline] extra's libraries (pyproject.toml): a lean install (the daemon alone) has
# none of them. These modules import one (or one of each other) on import; everything else
# imports them inside the function that needs them, so `watcher run` starts without them.
PIPELINE_EXTRA = {"numpy", "pandas", "scipy", "sklearn"}
NEEDS_PIPELINE = {"watcher/drift/stats.py", "watcher/drift/check.py", "watcher/drift/watch.py"}


def _eager_imports(path: Path) -> Iterator[tuple[int, str]]:
    """Imports that run when the module is imported: outside functions and outside
    ``if TYPE_CHECKING:`` (its ``else`` branch runs)."""
    pending: list[ast.stmt] = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.If):
            checking = isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
            pending.extend(node.orelse if checking else [*node.body, *node.orelse])
        elif isinstance(node, ast.Try | ast.With | ast.ClassDef):
            for field in ("body", "orelse", "finalbody"):
                pending.extend(getattr(node, field, []))
            pending.extend(s for h in getattr(node, "handlers", []) for s in h.body)


def test_the_pipeline_extra_is_imported_lazily() -> None:
    """numpy, pandas, scipy and sklearn load only where a command or setting needs them
    (watcher/extras.py refuses those settings on a lean install, exit 2)."""
    heavy = {rel.removesuffix(".py").replace("/", ".") for rel in NEEDS_PIPELINE}
    wrong, needing = [], set()
    for folder in ("watcher", "pipeline", "alerts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for line, name in _eager_imports(path):
                if name.split(".")[0] in PIPELINE_EXTRA or name in heavy:
                    needing.add(rel)
                    if rel not in NEEDS_PIPELINE:
                        wrong.append(f"{rel}:{line} imports {name} on import")
    assert not wrong, "\n".join(wrong)
    assert needing == NEEDS_PIPELINE, f"no longer eager, drop: {NEEDS_PIPELINE - needing}"
