"""Which settings need the optional ``[pipeline]`` extra, and whether it is installed.

``pip install registry-watcher`` is the daemon alone: it talks to an MLflow server through
mlflow-skinny and to Airflow over REST. Training (the local trigger backend, ``watcher
demo``), the evaluator, drift checks and MLflow's database stores need the extra: the full
``mlflow`` distribution, scikit-learn, pandas, numpy and scipy. A setting that needs it
without it is bad input (exit 2) named by its key, before anything starts.
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from watcher.errors import ConfigError

if TYPE_CHECKING:
    from watcher.config import Config

INSTALL_HINT = "pip install 'registry-watcher[pipeline]'"
# The extra's libraries besides the full mlflow distribution (checked by its metadata:
# mlflow-skinny installs the same `mlflow` package without its SQLAlchemy stores).
_LIBRARIES = ("sklearn", "pandas", "numpy", "scipy")
# The stores mlflow-skinny serves (it refuses any other scheme: sqlite, postgresql, mysql).
_SKINNY_SCHEMES = frozenset({"", "file", "http", "https", "databricks", "databricks-uc", "uc"})


@cache
def pipeline_installed() -> bool:
    """Whether the ``[pipeline]`` extra is importable (find_spec imports nothing)."""
    import importlib.metadata
    import importlib.util

    if any(importlib.util.find_spec(name) is None for name in _LIBRARIES):
        return False
    try:
        importlib.metadata.distribution("mlflow")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def store_needs(config: Config) -> list[str]:
    """The MLflow store setting, when only full mlflow can open it (a database URI)."""
    scheme = urlsplit(config.tracking_uri).scheme.lower()
    if scheme in _SKINNY_SCHEMES:
        return []
    if config.mlflow.tracking_uri:
        return [f"mlflow.tracking_uri: a {scheme}: store"]
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return [f"MLFLOW_TRACKING_URI: a {scheme}: store"]
    return ["mlflow.tracking_uri (unset): the embedded SQLite store"]


def daemon_needs(config: Config) -> list[str]:
    """Every setting ``watcher run`` would need the extra for, each "key: what"."""
    needs = store_needs(config)
    if config.trigger.backend == "local":
        needs.append('trigger.backend = "local": training (scikit-learn)')
    if config.monitor.feedback_dir is not None:
        needs.append("monitor.feedback_dir: the evaluator (scikit-learn, pandas)")
    if config.drift.model_fields_set:
        keys = ", ".join(f"drift.{k}" for k in sorted(config.drift.model_fields_set))
        needs.append(f"{keys}: drift checks (pandas, scipy)")
    return needs


def require(needs: list[str]) -> None:
    """ConfigError (exit 2) naming each setting, unless the extra is installed."""
    if needs and not pipeline_installed():
        raise ConfigError([f"{need} needs the [pipeline] extra ({INSTALL_HINT})" for need in needs])
