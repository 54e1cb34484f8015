"""Session-wide test setup. Service fixtures live in tests/services/*."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from watcher.runtime.logging import QUIET_LOGGERS as _QUIET_LOGGERS
from watcher.runtime.state import StateStore, open_state
from watcher.testing import FakeClock

# Keep MLflow from installing its own log handlers and from spawning job runners.
os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

pytest_plugins = [
    "tests.services.mlflow_server",
    "tests.services.airflow_server",
    "tests.services.alertmanager",
    "tests.services.prometheus_server",
]

# mlflow.set_tracking_uri/set_registry_uri also export these, and every subprocess a later
# test starts would inherit them: restore them after each test.
_MLFLOW_URI_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


# Parallel runs (pytest-xdist, `--dist loadgroup`): a file stays on one worker, so its
# module fixtures start once (the e2e stories are ordered steps on one module fixture);
# every file that uses the session Airflow joins one group, so only one worker pays for
# starting Airflow. Each worker has its own MLflow server. pytest 9 builds nodeids from
# an internal id, so xdist 3.8's own loadgroup (it renames nodeids to carry the group)
# groups nothing: pytest_xdist_make_scheduler below schedules by this rule instead, and
# collection checks that every test using Airflow is in one of these files.
AIRFLOW_FIXTURE = "airflow_server"
AIRFLOW_FILES = frozenset(
    {
        "tests/e2e/test_alias_story.py",
        "tests/e2e/test_custom_dag.py",
        "tests/e2e/test_stage_story.py",
        "tests/reliability/test_faults.py",
        "tests/trigger/test_dag_paused.py",
        "tests/trigger/test_trigger_airflow.py",
        "tests/trigger/test_airflow_e2e.py",
    }
)


# The distributed stack (tests/scaleout) is a second session of servers: its files form
# one group too, so one worker starts it while another may run the Airflow group (its
# fixture lives in tests/scaleout/conftest.py, so no file elsewhere can use it).
SCALEOUT_FIXTURE = "scaleout_stack"
SCALEOUT_DIR = "tests/scaleout/"


def _scope(nodeid: str) -> str:
    """The unit of work a worker takes whole: the Airflow or scaleout group, else the file."""
    path = nodeid.split("::", 1)[0]
    if path.startswith(SCALEOUT_DIR):
        return "scaleout"
    return "airflow" if path in AIRFLOW_FILES else path


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class _GroupScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return _GroupScheduling(config, log)


IS_ROOT = os.geteuid() == 0
# Fixtures that start a server or an MLflow store: their tests are marked `backend` and
# left out of `make check` (the fast tier); `make test` runs everything.
BACKEND_FIXTURES = {
    "mlflow_server",
    "mlflow_sqlite_uri",
    "registry_uri",
    "airflow_server",
    "alertmanager",
    "prometheus_server",
    "own_prometheus",
    "world",
    "dag_runs",
    SCALEOUT_FIXTURE,
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
        path = item.nodeid.split("::", 1)[0]
        if AIRFLOW_FIXTURE in getattr(item, "fixturenames", ()) and path not in AIRFLOW_FILES:
            raise pytest.UsageError(f"{path} uses {AIRFLOW_FIXTURE}: add it to AIRFLOW_FILES")
    # Long groups first, so the last group to finish is a short one.
    slow = {
        _scope(i.nodeid)
        for i in items
        if i.get_closest_marker("slow") or i.get_closest_marker("service")
    }
    items.sort(key=lambda i: _scope(i.nodeid) not in slow)


@pytest.fixture(autouse=True)
def _restore_mlflow_uri_env() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in _MLFLOW_URI_VARS}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """A test that runs a command in-process configures logging (the root level, noisy
    libraries, structlog's routing): every later test on the same worker starts from the
    state it has when run alone — a root left at ERROR hid the warnings one test asserts
    on, and a structlog left routed to stdlib moved another's events out of stdout."""
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in _QUIET_LOGGERS)]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = open_state(tmp_path / "state")
    yield store
    store.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
