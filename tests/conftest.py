"""Session-wide test setup. Service fixtures live in tests/services/*."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Keep MLflow from installing its own log handlers and from spawning job runners.
os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

pytest_plugins = [
    "tests.services.mlflow_server",
    "tests.services.airflow_server",
    "tests.services.alertmanager",
]

# mlflow.set_tracking_uri/set_registry_uri also export these, and every subprocess a later
# test starts would inherit them: restore them after each test.
_MLFLOW_URI_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(autouse=True)
def _restore_mlflow_uri_env() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in _MLFLOW_URI_VARS}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
