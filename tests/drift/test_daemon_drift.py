"""Drift in the daemon: a data change is compared with Production's reference profile.

Real pieces: pipeline.run trains v1 (logging its reference profile) into an
MLflow SQLite store; the data watcher then triggers the local pipeline backend
(a child process) with the drift scores in its conf.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pytest

from pipeline.sample_data import iris_table, shift, write_csv
from tests.data.conftest import DataSide, drive
from watcher.backends.mlflow_models import MlflowModels
from watcher.backends.mlflow_registry import MlflowRegistry
from watcher.config import Config, load_config
from watcher.drift.watch import DriftWatch
from watcher.runtime.alerting import Alerting
from watcher.runtime.state import StateStore, open_state
from watcher.testing import FakeClock

pytestmark = pytest.mark.slow


def config(tmp_path: Path, uri: str, model: str) -> Config:
    return load_config(
        None,
        env={},
        overrides={
            "watch.data_dir": str(tmp_path / "data"),
            "state.dir": str(tmp_path / "state"),
            "watch.quiet_period": "0.3",
            "watch.polling_interval": "0.2",
            "mlflow.tracking_uri": uri,
            "pipeline.model_name": model,
            # Production stays v1, so both data drops are compared with v1's profile.
            "pipeline.promote": "never",
            "trigger.retry_initial": "0.2",
            "alerts.log": False,
        },
    )


def alerts(cfg: Config, name: str) -> list[dict[str, object]]:
    path = cfg.alerts_file
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    return [r for r in rows if r["labels"]["alertname"] == name]


def test_shifted_data_alerts_and_scores_reach_the_training_run(
    tmp_path: Path, mlflow_sqlite_uri: str
) -> None:
    """Shifted data → DataDrift naming the column, scores in conf and run tags; resample → none."""
    from mlflow import MlflowClient

    from pipeline.run import main as pipeline_main

    model = f"drift-{uuid.uuid4().hex[:6]}"
    write_csv(tmp_path / "v1" / "iris.csv", iris_table())
    base = ["--tracking-uri", mlflow_sqlite_uri, "--model-name", model, "--promote", "always"]
    assert 0 == pipeline_main(["--data-dir", str(tmp_path / "v1"), *base])

    cfg = config(tmp_path, mlflow_sqlite_uri, model)
    state: StateStore = open_state(cfg.state.dir)
    clock = FakeClock()
    alerting = Alerting(cfg, state, clock)
    registry = MlflowRegistry(mlflow_sqlite_uri)
    dw = DataSide(
        cfg,
        state,
        hooks=[DriftWatch(cfg, state, registry, MlflowModels(registry), clock, alerting)],
        progress=False,
        follow_interval=0.2,
    )
    try:
        shifted = iris_table()
        for column in ("petal_length", "petal_width", "sepal_length"):
            shifted = shift(shifted, column, 3.0)
        write_csv(cfg.watch.data_dir / "iris.csv", shifted)
        dw.start()
        drive(dw, lambda: bool(dw.outbox.following()) or _finished(state), timeout=60)
        drive(dw, lambda: _finished(state), timeout=180)
        alerting.tick()
        drifted = alerts(cfg, "DataDrift")
        assert 1 == len(drifted)
        assert "sepal_length, petal_length, petal_width" in str(drifted[0]["annotations"])
        row = dw.outbox.get(f"data__{dw.status.last_hash}")
        assert row is not None
        assert "petal_length" in row.conf["drift"]["drifted_columns"]
        assert row.conf["drift"]["scores"]["petal_length"] is not None
        client = MlflowClient(tracking_uri=mlflow_sqlite_uri)
        exp = client.get_experiment_by_name("train_pipeline")
        assert exp is not None
        run = client.search_runs(
            [exp.experiment_id], filter_string=f"tags.dag_run_id = '{row.run_id}'"
        )[0]
        assert "petal_length" in run.data.tags["drift.columns"]
        assert "drift.petal_length" in run.data.metrics
        assert "data_changed" == run.data.tags["watcher.trigger.reason"]

        # An unshifted resample of the same distribution: a new trigger, no drift alert.
        header, rows = iris_table()
        random.Random(7).shuffle(rows)
        write_csv(cfg.watch.data_dir / "iris.csv", (header, rows))
        before = len(state.events(kinds=["run.succeeded"]))
        drive(dw, lambda: len(state.events(kinds=["run.succeeded"])) > before, timeout=180)
        alerting.tick()
        assert 1 == len(alerts(cfg, "DataDrift"))
        last = state.events(kinds=["data.drift"])[-1]
        assert "no drift" in last.message
    finally:
        dw.stop()
        alerting.stop()
        state.close()


def _finished(state: StateStore) -> bool:
    return bool(state.events(kinds=["run.succeeded", "run.failed"]))


def test_no_reference_is_a_note(tmp_path: Path, mlflow_sqlite_uri: str) -> None:
    """Without a Production version, drift is skipped with a note; the trigger still goes out."""
    cfg = config(tmp_path, mlflow_sqlite_uri, "never-trained")
    state = open_state(cfg.state.dir)
    try:
        registry = MlflowRegistry(mlflow_sqlite_uri)
        drift = DriftWatch(cfg, state, registry, MlflowModels(registry), FakeClock(), None)
        fields = drift.before_trigger(tmp_path, "0" * 64)
        assert {} == fields
        notes = state.events(kinds=["data.drift_skipped"])
        assert 1 == len(notes) and "no reference" in notes[0].message
    finally:
        state.close()
