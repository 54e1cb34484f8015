"""The alias story of tests/e2e on the distributed stack (tests/scaleout/stack.py):
PostgreSQL-backed Airflow with two Celery workers and MLflow with proxied artifacts,
the watcher freezing each dataset into the snapshot dir the workers read.

The steps run in order on one daemon and one data dir (the story fixture); each is its
own test so a failing step names itself.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    EVENT_DEADLINE_S,
    RUN_DEADLINE_S,
    Daemon,
    base_config,
    dag_runs,
    mlflow_client,
    notified,
    task_instances,
    training_run,
    wait_run,
    write_iris,
    write_toml,
)
from tests.reliability.conftest import wait_for
from tests.scaleout.stack import STARTUP_TIMEOUT_S, WORKERS, Stack
from tests.services.airflow_server import AirflowServer
from watcher.ports import TAG_QUARANTINED

pytestmark = [pytest.mark.scaleout, pytest.mark.service, pytest.mark.slow]

TASKS = ("preprocess", "train", "register", "validate")
SETTINGS: dict[str, object] = {
    "n_estimators": 10,
    "max_depth": 3,
    "promote": "always",
    "threshold": 0.5,
}


@dataclass
class Story:
    daemon: Daemon
    model: str
    stack: Stack
    hashes: list[str] = field(default_factory=list)

    @property
    def airflow(self) -> AirflowServer:
        return self.stack.airflow

    @property
    def mlflow(self) -> str:
        return self.stack.mlflow.url

    @property
    def data(self) -> Path:
        return self.daemon.root / "data" / "iris.csv"

    def runs(self) -> dict[str, dict[str, Any]]:
        return dag_runs(self.airflow, self.model)

    def versions(self) -> list[str]:
        found = mlflow_client(self.mlflow).search_model_versions(f"name = '{self.model}'")
        return sorted(str(v.version) for v in found)

    def production(self) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            alias = mlflow_client(self.mlflow).get_model_version_by_alias(self.model, "production")
        except MlflowException:
            return None
        return str(alias.version)

    def quarantined(self, version: str) -> bool:
        tags = mlflow_client(self.mlflow).get_model_version(self.model, version).tags
        return tags.get(TAG_QUARANTINED) == "true"


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory, scaleout_stack: Stack) -> Iterator[Story]:
    stack = scaleout_stack
    with stack.airflow.client() as client:  # a fresh deployment's DAG starts paused
        resp = client.patch("/api/v2/dags/train_pipeline", json={"is_paused": False})
        assert 200 == resp.status_code, resp.text
    root = tmp_path_factory.mktemp("scaleout-watcher")  # under the root the workers can't see
    (root / "data").mkdir()
    daemon = Daemon(root, password=stack.airflow.password)
    model = f"scaleout-{uuid.uuid4().hex[:8]}"
    config = base_config(
        root, model, "alias", stack.airflow, stack.mlflow.url, "", daemon.http_port
    )
    del config["alerts.alertmanager"]  # notifications: the file channel (state/alerts.jsonl)
    config["watch"]["snapshot_dir"] = stack.snapshots
    config["monitor"]["mlflow_down_alert_after"] = "1s"
    config["pipeline"] = {"model_name": model, **SETTINGS}
    write_toml(daemon.config, config)
    try:
        yield Story(daemon, model, stack)
    finally:
        daemon.close()


@pytest.mark.timeout(900)  # includes starting the stack
def test_1_data_trains_its_snapshot_on_celery_workers_v1_production(story: Story) -> None:
    """Data lands → one DAG run ``data__<hash>`` whose conf points at the snapshot; every
    task ran on a Celery worker; the model went to MLflow over HTTP only → v1 Production."""
    story.daemon.start()
    h1 = write_iris(story.data, 0.01)
    story.hashes.append(h1)
    run_id = f"data__{h1}"
    run = wait_run(story.airflow, run_id, story.daemon)
    assert "success" == run["state"], run
    assert [run_id] == list(story.runs())
    assert str(story.stack.snapshots / h1) == run["conf"]["data_dir"]
    ran_on = {task: story.stack.worker_of(run_id, task, 1) for task in TASKS}
    assert set(ran_on.values()) <= set(WORKERS), ran_on

    mlrun = training_run(mlflow_client(story.mlflow), run_id)
    assert h1 == mlrun.data.tags["data_hash"]
    assert mlrun.info.artifact_uri.startswith("mlflow-artifacts:"), mlrun.info.artifact_uri
    assert any((story.stack.mlflow.root / "artifacts").rglob("MLmodel")), "stored by the server"
    assert "1" == story.production()


@pytest.mark.root
def test_2_the_workers_see_the_snapshot_not_the_live_data(story: Story) -> None:
    """Inside a worker's mount namespace the live data dir does not exist (nor the MLflow
    store), the snapshot the run trained does: the runs cannot have read anything else."""
    pid = story.airflow.procs[WORKERS[0]].pid

    def in_worker(*cmd: str) -> int:
        done = subprocess.run(["nsenter", "-t", str(pid), "-m", "--", *cmd], check=False)
        return done.returncode

    snapshot = story.stack.snapshots / story.hashes[0] / "iris.csv"
    assert 0 == in_worker("test", "-r", str(snapshot))
    assert story.data.exists()
    assert 0 != in_worker("test", "-e", str(story.data))
    assert 0 != in_worker("test", "-e", str(story.stack.mlflow.root / "artifacts"))


@pytest.mark.timeout(900)
def test_3_kill9_watcher_then_a_worker_killed_mid_task_retried_on_the_other(story: Story) -> None:
    """New data, SIGKILL of the watcher within a second, restart; the worker running
    ``train`` is SIGKILLed mid-task → Airflow fails the try on missed heartbeats and
    retries it on the other worker: one DAG run per hash, one new registered version."""
    daemon = story.daemon
    queued = daemon.count("trigger_queued")
    changed = time.monotonic()
    h2 = write_iris(story.data, 0.02)
    story.hashes.append(h2)
    wait_for(
        lambda: daemon.count("trigger_queued") > queued or time.monotonic() - changed > 1.0,
        EVENT_DEADLINE_S,
        "the trigger or one second",
        poll=0.02,
    )
    daemon.kill9()
    daemon.start()
    run_id = f"data__{h2}"
    victim: list[str] = []

    def train_running_on_a_worker() -> bool:
        try:
            state = task_instances(story.airflow, run_id).get("train", {}).get("state")
        except httpx.HTTPStatusError:  # the run is not created yet
            return False
        worker = story.stack.worker_of(run_id, "train", 1)
        if state == "running" and worker is not None:
            victim.append(worker)
        return bool(victim)

    wait_for(train_running_on_a_worker, RUN_DEADLINE_S, "train running on a worker", poll=0.2)
    story.stack.kill_worker(victim[0])
    run = wait_run(story.airflow, run_id, daemon)
    assert "success" == run["state"], run
    tis = task_instances(story.airflow, run_id)
    assert 2 == tis["train"]["try_number"], tis["train"]
    (survivor,) = set(WORKERS) - set(victim)
    assert survivor == story.stack.worker_of(run_id, "train", 2)
    expected = {f"data__{h}" for h in story.hashes}
    assert expected == set(story.runs())
    assert expected == daemon.outbox_runs()
    assert ["1", "2"] == story.versions()
    assert "2" == story.production()  # promote = always


def test_4_low_live_accuracy_rolls_back(story: Story) -> None:
    """report-accuracy below the threshold → automatic rollback v2 → v1, v2 quarantined,
    ModelRolledBack notified."""
    daemon = story.daemon
    done = daemon.cli(
        "report-accuracy", "--model", story.model, "--accuracy", "0.5", "--samples", "500"
    )
    assert 0 == done.returncode, done.stderr
    rolled = daemon.wait_event("rollback.done", "the automatic rollback", model=story.model)
    assert ("2", "1", True) == (
        rolled["payload"]["from_version"],
        rolled["payload"]["to_version"],
        rolled["payload"]["automatic"],
    )
    assert "1" == story.production()
    assert story.quarantined("2")
    wait_for(
        lambda: bool(notified(daemon, "ModelRolledBack", story.model)),
        EVENT_DEADLINE_S,
        "the ModelRolledBack notification",
    )


def wait_new_event(daemon: Daemon, kind: str, seen: int, what: str) -> None:
    """Wait until the history holds more than ``seen`` events of ``kind``."""
    wait_for(
        lambda: len(daemon.events(kind)) > seen or not daemon.running,
        EVENT_DEADLINE_S,
        what,
        poll=0.3,
    )
    assert daemon.running, daemon.tail()


@pytest.mark.timeout(600)
def test_5_mlflow_restart_mid_poll_is_an_outage_handled(story: Story) -> None:
    """SIGKILL of the MLflow server while the watcher polls every second → one
    registry.unreachable, the daemon keeps running; the server restarts on PostgreSQL →
    registry.reachable, and the registry is as it was (no spurious rollback)."""
    daemon = story.daemon
    rollbacks = len(daemon.events("rollback.started", model=story.model))
    # Counted, not assumed 0: a poll timing out on a loaded box is an outage too.
    down, up = len(daemon.events("registry.unreachable")), len(daemon.events("registry.reachable"))
    story.stack.mlflow.kill()
    wait_new_event(daemon, "registry.unreachable", down, "the outage in the history")
    story.stack.mlflow.start(timeout=STARTUP_TIMEOUT_S)
    wait_new_event(daemon, "registry.reachable", up, "the recovery in the history")
    assert down + 1 == len(daemon.events("registry.unreachable")), "one event per outage"
    assert rollbacks == len(daemon.events("rollback.started", model=story.model))
    assert "1" == story.production()
    assert ["1", "2"] == story.versions()


def test_6_sigterm_exits_0(story: Story) -> None:
    assert 0 == story.daemon.stop()
