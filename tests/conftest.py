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


# Parallel runs (pytest-xdist, `--dist loadgroup`): a file stays on one worker, so its
# module fixtures start once; every test that uses the session Airflow joins one group,
# so only one worker pays for starting Airflow. Each worker has its own MLflow server.
SHARED_SERVER_GROUPS = {"airflow_server": "airflow"}


IS_ROOT = os.geteuid() == 0
# Fixtures that start a server or an MLflow store: their tests are marked `backend` and
# left out of `make check` (the fast tier); `make test` runs everything.
BACKEND_FIXTURES = {
    "mlflow_server",
    "mlflow_sqlite_uri",
    "registry_uri",
    "airflow_server",
    "alertmanager",
    "world",
    "dag_runs",
}


def pytest_report_header(config: pytest.Config) -> str:
    if IS_ROOT:
        return "privileges: root — tests marked `root` run (real tmpfs mounts, nobody user)"
    return "privileges: not root — tests marked `root` are skipped (listed with -ra)"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs_root = pytest.mark.skip(reason="needs root (see the `root` marker); not root here")
    for item in items:
        if not IS_ROOT and item.get_closest_marker("root"):
            item.add_marker(needs_root)
        if BACKEND_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.backend)
        fixtures = getattr(item, "fixturenames", ())
        group = next((g for f, g in SHARED_SERVER_GROUPS.items() if f in fixtures), None)
        item.add_marker(pytest.mark.xdist_group(group or item.nodeid.split("::")[0]))
    # Long groups first, so the last group to finish is a short one.
    slow = {
        _group(i) for i in items if i.get_closest_marker("slow") or i.get_closest_marker("service")
    }
    items.sort(key=lambda i: _group(i) not in slow)


def _group(item: pytest.Item) -> str:
    marker = item.get_closest_marker("xdist_group")
    return str(marker.args[0]) if marker is not None and marker.args else ""


@pytest.fixture(autouse=True)
def _restore_mlflow_uri_env() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in _MLFLOW_URI_VARS}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
