"""Session-wide test setup. Service fixtures live in tests/services/*."""

from __future__ import annotations

import os

# Keep MLflow from installing its own log handlers and from spawning job runners.
os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

pytest_plugins = [
    "tests.services.mlflow_server",
    "tests.services.airflow_server",
    "tests.services.alertmanager",
]
