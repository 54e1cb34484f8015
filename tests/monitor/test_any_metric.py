"""Monitoring and rollback on any catalogue metric (#19) against a real `mlflow server`.

Regression versions are registered directly in MLflow with the lineage tags the
pipeline writes (``rmse`` as the training score, ``watcher.previous_production``);
live values go in through `watcher report-metric` and the Python API, the monitor
reads them back through the MLflow adapter, time is a fake clock.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from watcher.backends.mlflow_observations import FeedbackReader, report_metric
from watcher.backends.mlflow_registry import MlflowRegistry
from watcher.cli.main import main
from watcher.config import Config, load_config
from watcher.monitor.accuracy import ACCURACY_ALERT, METRIC_ALERT
from watcher.monitor.policy import Status
from watcher.monitor.poll import Monitor
from watcher.ports import TAG_PREVIOUS, RegistryMode
from watcher.rollback.auto import AutoRollback
from watcher.runtime.alerting import Alerting
from watcher.runtime.metrics import Metrics
from watcher.runtime.state import StateStore, open_state
from watcher.testing import FakeClock

pytestmark = pytest.mark.service


def register(uri: str, mode: RegistryMode, name: str, scores: list[dict[str, str]]) -> None:
    """Versions 1..n of ``name``, each promoted over the previous one (lineage tag included),
    as the pipeline leaves them; ``scores``: each version's training-score tags."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(name)
    run = client.create_run(client.create_experiment(name))
    reg = MlflowRegistry(uri, mode)
    for i, tags in enumerate(scores, start=1):
        lineage = {TAG_PREVIOUS: str(i - 1)} if i > 1 else {}
        client.create_model_version(
            name,
            source=f"{run.info.artifact_uri}/model",
            run_id=run.info.run_id,
            tags={**tags, **lineage, "data_hash": f"{i:02x}" * 32},
        )
        reg.set_production(name, str(i))


@dataclass
class Daemon:
    """The monitor, automatic rollback and alerting of one daemon, driven by hand."""

    config: Config
    state: StateStore
    clock: FakeClock
    monitor: Monitor
    rollback: AutoRollback
    alerting: Alerting
    metrics: Metrics

    def cycle(self) -> None:
        self.clock.advance(30)
        result = self.monitor.poll_once()
        assert result is not None and result.error is None, result
        self.monitor.tick()
        self.rollback.tick()
        self.alerting.tick()
        self.alerting._next = 0.0

    def sent(self, alertname: str) -> list[dict[str, Any]]:
        path = self.config.alerts_file
        rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        return [r for r in rows if r["labels"]["alertname"] == alertname]

    def status(self, model: str) -> Status:
        return self.monitor.verdicts()[model].status


def daemon(url: str, tmp_path: Path, toml: str, env: Mapping[str, str]) -> Daemon:
    path = tmp_path / "watcher.toml"
    path.write_text(toml)
    cfg = load_config(
        path,
        env={
            "WATCHER_STATE__DIR": str(tmp_path / "state"),
            "WATCHER_MLFLOW__TRACKING_URI": url,
            "WATCHER_ROLLBACK__COOLDOWN": "0",
            "WATCHER_ALERTS__LOG": "false",
            **env,
        },
    )
    state = open_state(cfg.state.dir)
    clock = FakeClock(datetime.now().astimezone())
    alerting = Alerting(cfg, state, clock)
    mode = cfg.mlflow.registry_mode
    poll = MlflowRegistry(url, mode, max_retries=1, timeout=10)
    metrics = Metrics()
    monitor = Monitor(
        cfg.monitor,
        state,
        poll,
        FeedbackReader(poll),
        alerting,
        clock=clock,
        metrics=metrics,
        use_scheduler=False,
    )
    monitor.start()
    registry = MlflowRegistry(url, mode, max_retries=1, timeout=10)
    rollback = AutoRollback(
        cfg.rollback,
        cfg.monitor.policy_for,
        monitor,
        registry,
        state,
        cfg.state.dir,
        clock,
        alerting,
    )
    rollback.start()
    return Daemon(cfg, state, clock, monitor, rollback, alerting, metrics)


@pytest.fixture
def closing() -> Iterator[list[Daemon]]:
    built: list[Daemon] = []
    yield built
    for d in built:
        d.alerting.stop()
        d.state.close()


@pytest.mark.parametrize("mode", ["alias", "stage"])
def test_live_rmse_above_threshold_fires_and_rolls_back(
    mlflow_server: str,
    tmp_path: Path,
    mode: RegistryMode,
    closing: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """rmse is better lower: 30 passes `max_rmse = 40`; 41.2 (reported with `watcher
    report-metric`) fires ModelMetricBreach (metric=rmse) and rolls Production back to the
    prior stable version; /metrics shows watcher_live_metric{metric="rmse"}."""
    model = f"house-{mode}-{uuid.uuid4().hex[:6]}"
    register(mlflow_server, mode, model, [{"rmse": "35.0"}, {"rmse": "33.0"}])
    toml = (
        f'[monitor]\nmodels = ["{model}"]\nmax_rmse = 40\nwindow = 1\n\n[rollback]\nauto = true\n'
    )
    d = daemon(mlflow_server, tmp_path, toml, {"WATCHER_MLFLOW__REGISTRY_MODE": mode})
    closing.append(d)
    registry = MlflowRegistry(mlflow_server, mode)

    report_metric(model, "rmse", 30.0, 500, version="2", at=d.clock.now(), registry=registry)
    d.cycle()
    assert Status.OK == d.status(model)
    assert "2" == registry.production(model)

    monkeypatch.setenv("WATCHER_MLFLOW__TRACKING_URI", mlflow_server)
    monkeypatch.setenv("WATCHER_MLFLOW__REGISTRY_MODE", mode)
    monkeypatch.setenv("WATCHER_STATE__DIR", str(tmp_path / "cli-state"))
    d.clock.advance(60)
    argv = ["report-metric", "--model", model, "--metric", "rmse", "--value", "41.2"]
    assert 0 == main([*argv, "--samples", "500", "--at", d.clock.now().isoformat()])
    assert f"{model} v2: rmse 41.2 over 500 samples" in capsys.readouterr().out
    d.cycle()

    assert "1" == registry.production(model)
    bad = registry.get_version(model, "2")
    assert bad is not None and bad.quarantined
    assert "live rmse of v2 above 40" in bad.tags["watcher.rollback_reason"]
    (breach,) = d.sent(METRIC_ALERT)
    labels = breach["labels"]
    assert ("rmse", model, "2") == (labels["metric"], labels["model"], labels["version"])
    assert "live rmse 41.2000 above 40" in str(breach["annotations"])
    assert [] == d.sent(ACCURACY_ALERT)
    assert 1 == len(d.sent("ModelRolledBack"))
    text = d.metrics.render().decode()
    assert f'watcher_live_metric{{metric="rmse",model="{model}"}} 41.2' in text
    assert f'watcher_live_accuracy{{model="{model}"}}' not in text
    row = d.state.conn.execute(
        "SELECT live_metric, live_value, live_accuracy FROM registry_models WHERE model = ?",
        (model,),
    ).fetchone()
    assert ("rmse", 41.2, None) == tuple(row)


def test_rollback_refused_onto_a_version_whose_rmse_is_worse(
    mlflow_server: str, tmp_path: Path, closing: list[Daemon]
) -> None:
    """The prior version's own training rmse (52) is worse than the threshold (40): the
    breach is alerted, Production stays, the refusal says why in the metric's terms."""
    model = f"house-worse-{uuid.uuid4().hex[:6]}"
    register(mlflow_server, "alias", model, [{"rmse": "52.0"}, {"rmse": "33.0"}])
    toml = f'[monitor]\nmodels = ["{model}"]\nmetric = "rmse"\nthreshold = 40\nwindow = 1\n'
    d = daemon(mlflow_server, tmp_path, toml + "[rollback]\nauto = true\n", {})
    closing.append(d)
    registry = MlflowRegistry(mlflow_server, "alias")
    report_metric(model, "rmse", 45.0, 500, at=d.clock.now(), registry=registry)
    d.cycle()
    assert Status.FIRING == d.status(model)
    assert "2" == registry.production(model)
    (refused,) = d.state.events(kinds=["rollback.refused"])
    assert "target v1 training rmse 52.0000 > 40.0000" in refused.message


def test_mixed_fleet_alerts_each_model_on_its_own_metric(
    mlflow_server: str, tmp_path: Path, closing: list[Daemon]
) -> None:
    """One daemon, a classifier on accuracy ([monitor]) and a regressor on rmse (its
    override): each fires on its own metric; a value of the other metric is not watched."""
    tag = uuid.uuid4().hex[:6]
    clf, reg_model = f"fleet-iris-{tag}", f"fleet-house-{tag}"
    register(mlflow_server, "alias", clf, [{"accuracy": "0.96"}])
    register(mlflow_server, "alias", reg_model, [{"rmse": "35.0"}])
    toml = (
        f'[monitor]\nmodels = ["fleet-*-{tag}"]\nmin_accuracy = 0.9\nwindow = 1\n\n'
        f'[monitor.overrides."fleet-house-*"]\nmax_rmse = 40\nmin_samples = 50\n'
    )
    d = daemon(mlflow_server, tmp_path, toml, {})
    closing.append(d)
    registry = MlflowRegistry(mlflow_server, "alias")

    def report(model: str, metric: str, value: float) -> None:
        d.clock.advance(1)
        report_metric(model, metric, value, 100, at=d.clock.now(), registry=registry)

    report(clf, "accuracy", 0.5)  # breaches accuracy
    report(reg_model, "rmse", 30.0)  # passes rmse
    report(reg_model, "accuracy", 0.1)  # not the regressor's metric: ignored
    d.cycle()
    assert (Status.FIRING, Status.OK) == (d.status(clf), d.status(reg_model))
    (low,) = d.sent(ACCURACY_ALERT)
    assert clf == low["labels"]["model"] and "metric" not in low["labels"]
    assert [] == d.sent(METRIC_ALERT)

    report(clf, "accuracy", 0.97)
    report(clf, "rmse", 400.0)  # not the classifier's metric: ignored
    report(reg_model, "rmse", 55.0)
    d.cycle()
    assert (Status.RESOLVED, Status.FIRING) == (d.status(clf), d.status(reg_model))
    (breach,) = d.sent(METRIC_ALERT)
    assert {"model": reg_model, "metric": "rmse"}.items() <= breach["labels"].items()
    assert {clf: "accuracy", reg_model: "rmse"} == {
        m: v.metric for m, v in d.monitor.verdicts().items()
    }
    text = d.metrics.render().decode()
    assert f'watcher_live_metric{{metric="accuracy",model="{clf}"}} 0.97' in text
    assert f'watcher_live_metric{{metric="rmse",model="{reg_model}"}} 55.0' in text
