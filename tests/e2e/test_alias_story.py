"""The whole story in alias mode, step by step, on one daemon and one data dir.

The steps run in order on shared state (the story fixture); each is its own test so
a failing step names itself and the later, independent ones still report.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pipeline.data import DEFAULT_SEED
from tests.e2e.conftest import (
    EVENT_DEADLINE_S,
    Daemon,
    base_config,
    dag_runs,
    gauge,
    mlflow_client,
    notified,
    task_instances,
    training_run,
    wait_am_alert,
    wait_run,
    write_iris,
    write_toml,
)
from tests.reliability.conftest import wait_for
from tests.runtime.conftest import promtool
from tests.services.airflow_server import AirflowServer
from watcher.ports import TAG_QUARANTINED

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.e2e]

# What the watcher's TOML says and the trained run must have used (not the defaults:
# 100 trees, unbounded depth, if_better, 0.9).
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
    airflow: AirflowServer
    mlflow: str
    alertmanager: str
    hashes: list[str] = field(default_factory=list)
    rollbacks: int = 0  # rollback.started events before the restart

    @property
    def data(self) -> Path:
        return self.daemon.root / "data" / "iris.csv"

    def runs(self) -> dict[str, dict[str, Any]]:
        return dag_runs(self.airflow, self.model)

    def production(self) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(
                mlflow_client(self.mlflow)
                .get_model_version_by_alias(self.model, "production")
                .version
            )
        except MlflowException:
            return None

    def quarantined(self, version: str) -> bool:
        tags = mlflow_client(self.mlflow).get_model_version(self.model, version).tags
        return tags.get(TAG_QUARANTINED) == "true"


@pytest.fixture(scope="module")
def story(
    tmp_path_factory: pytest.TempPathFactory,
    real_dag: AirflowServer,
    mlflow_server: str,
    alertmanager: str,
) -> Iterator[Story]:
    root = tmp_path_factory.mktemp("e2e-alias")
    (root / "data").mkdir()
    daemon = Daemon(root, password=real_dag.password)
    model = f"e2e-alias-{uuid.uuid4().hex[:8]}"
    config = base_config(
        root, model, "alias", real_dag, mlflow_server, alertmanager, daemon.http_port
    )
    config["pipeline"] = {"model_name": model, **SETTINGS}
    # No cooldown: after the undo, only what the daemon remembers acting on may keep it
    # from rolling the restored v2 back again (a cooldown would refuse, hiding that).
    config["rollback"] = {"auto": True, "cooldown": "0s"}
    write_toml(daemon.config, config)
    try:
        yield Story(daemon, model, real_dag, mlflow_server, alertmanager)
    finally:
        daemon.close()


@pytest.mark.timeout(900)  # includes starting Airflow, MLflow and Alertmanager
def test_1_data_lands_one_run_with_the_watchers_settings_v1_production(story: Story) -> None:
    """Data lands → exactly one DAG run ``data__<hash>``; the MLflow run has the seed's
    params, metrics and the data_hash tag, and used the settings of the watcher's TOML
    (issue 13 bug 1: it trained 100 unbounded trees) → v1 Production."""
    story.daemon.start()
    h1 = write_iris(story.data, 0.01)
    story.hashes.append(h1)
    run = wait_run(story.airflow, f"data__{h1}", story.daemon)
    assert "success" == run["state"], run
    assert [f"data__{h1}"] == list(story.runs())
    sent = {"data_hash": h1, "registry_mode": "alias", "model_name": story.model}
    assert sent.items() <= run["conf"].items()

    mlrun = training_run(mlflow_client(story.mlflow), f"data__{h1}")
    assert h1 == mlrun.data.tags["data_hash"]
    assert {"accuracy", "f1_score"} <= set(mlrun.data.metrics)
    expected = {k: str(v) for k, v in SETTINGS.items()}
    expected |= {"random_state": str(DEFAULT_SEED), "registry_mode": "alias"}
    assert expected == {k: mlrun.data.params.get(k) for k in expected}
    assert "1" == story.production()


def test_2_same_content_never_triggers(story: Story) -> None:
    """touch, an identical copy, a rename away and back: each is scanned, none triggers."""
    daemon, data = story.daemon, story.data
    steps: dict[str, Callable[[], object]] = {
        "touch": data.touch,
        "identical copy": lambda: data.write_bytes(data.read_bytes()),
        "rename away and back": lambda: (
            data.rename(daemon.root / "away.csv"),
            (daemon.root / "away.csv").rename(data),
        ),
    }
    for what, change in steps.items():
        scans = daemon.count("data_scanned", containing=story.hashes[0])
        change()
        wait_for(
            lambda n=scans: daemon.count("data_scanned", containing=story.hashes[0]) > n,  # type: ignore[misc]
            EVENT_DEADLINE_S,
            f"the scan after {what}",
            diagnose=daemon.diagnose,
        )
    assert 1 == daemon.count("trigger_queued")
    assert [f"data__{story.hashes[0]}"] == list(story.runs())
    daemon.wait_event("run.succeeded", f"the watcher following data__{story.hashes[0]}")


@pytest.mark.timeout(600)
def test_3_new_data_then_kill9_and_restart_still_one_run(story: Story) -> None:
    """New data, SIGKILL within a second of the change, restart: exactly one run for it."""
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
    run = wait_run(story.airflow, f"data__{h2}", daemon)
    assert "success" == run["state"], run
    assert {f"data__{h}" for h in story.hashes} == set(story.runs())
    assert {f"data__{h}" for h in story.hashes} == daemon.outbox_runs()
    mlrun = training_run(mlflow_client(story.mlflow), f"data__{h2}")
    assert "10" == mlrun.data.params["n_estimators"]
    assert "2" == story.production()  # promote = always


def test_4_low_live_accuracy_alerts_and_rolls_back(story: Story) -> None:
    """report-accuracy below the threshold → ModelAccuracyLow in Alertmanager → automatic
    rollback v2 → v1 → v2 quarantined → ModelRolledBack notified."""
    daemon = story.daemon
    done = daemon.cli(
        "report-accuracy", "--model", story.model, "--accuracy", "0.5", "--samples", "500"
    )
    assert 0 == done.returncode, done.stderr
    alert = wait_am_alert(
        story.alertmanager,
        daemon,
        "ModelAccuracyLow",
        sent_by_daemon=True,  # the rollback resolves it at the next poll
        alertname="ModelAccuracyLow",
        model=story.model,
    )
    assert "2" == alert["labels"].get("version")
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
        diagnose=lambda: daemon.diagnose("ModelRolledBack"),
    )


def test_5_undo_returns_to_v2_and_quarantines_nothing(story: Story) -> None:
    """`rollback --undo` returns to the state before the rollback: v2 Production, and no
    version quarantined (issue 13 bug 2: it tagged the healthy v1)."""
    done = story.daemon.cli("rollback", "--model", story.model, "--undo", "--yes")
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "2" == story.production()
    assert {"1": False, "2": False} == {v: story.quarantined(v) for v in ("1", "2")}


def test_6_after_a_restart_the_first_scrape_has_every_gauge(story: Story) -> None:
    """SIGTERM → exit 0; after the restart the first /metrics scrape passes promtool and
    has every gauge (issue 13 bug 4: production version and last trigger were missing)."""
    daemon = story.daemon
    story.rollbacks = len(daemon.events("rollback.started", model=story.model))
    assert 0 == daemon.stop()
    daemon.start()
    text = daemon.metrics()
    checked = promtool(text)
    assert 0 == checked.returncode, checked.stdout + checked.stderr
    exposition = text.decode()
    production = story.production()
    assert production is not None
    assert float(production) == gauge(exposition, "watcher_production_version", model=story.model)
    assert (gauge(exposition, "watcher_last_trigger_timestamp_seconds") or 0) > 0
    assert 1 == gauge(exposition, "watcher_dataset_files")
    assert 1 == gauge(exposition, "watcher_up")
    assert 0 == gauge(exposition, "watcher_outbox_depth")
    states = [
        gauge(exposition, "watcher_alert_state", model=story.model, state=s)
        for s in ("ok", "inconclusive", "pending", "firing")
    ]
    assert 1 == sum(s or 0 for s in states), states


def test_7_the_restart_does_not_roll_back_again(story: Story) -> None:
    """The breach of v2 still fires, but the operator restored v2 by hand: the restarted
    daemon leaves it alone (issue 13 bug 3: it rolled v2 back again within seconds)."""
    daemon = story.daemon
    ready = daemon.started_at

    # Positive marker: registry polls well after ready (poll_interval 1 s); each would
    # have acted on the still-firing breach.
    def polled_since_ready() -> bool:
        text = daemon.metrics().decode()
        last = gauge(text, "watcher_last_successful_poll_timestamp_seconds", backend="mlflow")
        return (last or 0.0) > ready + 3

    wait_for(
        polled_since_ready,
        EVENT_DEADLINE_S,
        "three registry polls after the restart",
        diagnose=daemon.diagnose,
    )
    assert story.rollbacks == len(daemon.events("rollback.started", model=story.model))
    assert [] == daemon.events("rollback.refused", model=story.model), "not even considered"
    assert "2" == story.production()


@pytest.mark.timeout(600)
def test_8_broken_csv_fails_the_run_on_the_first_try(story: Story) -> None:
    """A broken CSV → the DAG run fails at preprocess on try 1 although retries are 2
    (bad data is not retried) → DagRunFailed in Alertmanager, run.failed in history."""
    daemon = story.daemon
    versions = len(mlflow_client(story.mlflow).search_model_versions(f"name = '{story.model}'"))
    h3 = write_iris(story.data, 0.03, broken_row=41)
    story.hashes.append(h3)
    run = wait_run(story.airflow, f"data__{h3}", daemon)
    assert "failed" == run["state"], run
    tis = task_instances(story.airflow, f"data__{h3}")
    assert ("failed", 1) == (tis["preprocess"]["state"], tis["preprocess"]["try_number"])
    assert "upstream_failed" == tis["train"]["state"]
    alert = wait_am_alert(
        story.alertmanager, daemon, "DagRunFailed", alertname="DagRunFailed", run_id=f"data__{h3}"
    )
    assert ("preprocess", "1") == (alert["labels"]["task_id"], alert["annotations"]["try_number"])
    daemon.wait_event("run.failed", f"the watcher following data__{h3}")
    after = mlflow_client(story.mlflow).search_model_versions(f"name = '{story.model}'")
    assert versions == len(after), "bad data registered nothing"
    assert {f"data__{h}" for h in story.hashes} == set(story.runs())


def test_9_sigterm_exits_0(story: Story) -> None:
    assert 0 == story.daemon.stop()
