"""registry-watcher: the daemon.

The Python API is what this package exports (``watcher.report_accuracy``,
``watcher.report_metric``); the modules
below it are internal and may move.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "report_accuracy", "report_metric"]

if TYPE_CHECKING:
    from watcher.backends.mlflow_observations import report_accuracy, report_metric


def __getattr__(name: str) -> Any:
    # Lazy: `import watcher` (every CLI command) must not pull in the MLflow adapter.
    if name in ("report_accuracy", "report_metric"):
        from watcher.backends import mlflow_observations

        return getattr(mlflow_observations, name)
    raise AttributeError(f"module 'watcher' has no attribute {name!r}")
