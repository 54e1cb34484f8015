"""Live accuracy from a real Prometheus (scraping a test exporter) and a real `mlflow server`.

The daemon's pieces are driven by hand (poll, tick, rollback, alerting) on a fake clock;
the exporter's values are set by the test and each is waited for in Prometheus itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.monitor.test_any_metric import register
from tests.services.prometheus_server import PrometheusServer, expose
from watcher.app import build_monitor
from watcher.backends.mlflow_observations import FeedbackReader
from watcher.backends.mlflow_registry import MlflowRegistry
from watcher.backends.prometheus_observations import SOURCE, PrometheusObservations
from watcher.config import Config, load_config
from watcher.monitor.accuracy import ACCURACY_ALERT
from watcher.monitor.outage import OBSERVATIONS_DOWN_ALERT
from watcher.monitor.policy import Status
from watcher.monitor.poll import Monitor
from watcher.monitor.sources import Combined
from watcher.rollback.auto import AutoRollback
from watcher.runtime.alerting import Alerting
from watcher.runtime.state import StateStore, open_state
from watcher.testing import FakeClock

pytestmark = pytest.mark.service

VALUE = 'model_accuracy{model="{model}",version="{version}"}'
SAMPLES = 'model_predictions_total{model="{model}",version="{version}"}'


@dataclass
class Daemon:
    config: Config
    state: StateStore
    clock: FakeClock
    monitor: Monitor
    rollback: AutoRollback
    alerting: Alerting
    prometheus: PrometheusObservations

    def cycle(self, seconds: float = 30) -> None:
        self.clock.advance(seconds)
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

    def kinds(self) -> list[str]:
        return [e.kind for e in self.state.events() if "observations" in e.kind]


@pytest.fixture
def built() -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    for d in made:
        d.alerting.stop()
        d.prometheus.close()
        d.state.close()


def daemon(mlflow: str, prom: str, tmp_path: Path, model: str, extra: str = "") -> Daemon:
    path = tmp_path / "watcher.toml"
    path.write_text(
        f'[monitor]\nmodels = ["{model}"]\nmin_accuracy = 0.9\nmin_samples = 100\n'
        f"[monitor.prometheus]\nurl = \"{prom}\"\nvalue_query = '{VALUE}'\n"
        f'samples_query = \'{SAMPLES}\'\ndown_alert_after = "2m"\ntimeout = "5s"\n{extra}'
    )
    cfg = load_config(
        path,
        env={
            "WATCHER_STATE__DIR": str(tmp_path / "state"),
            "WATCHER_MLFLOW__TRACKING_URI": mlflow,
            "WATCHER_ROLLBACK__COOLDOWN": "0",
            "WATCHER_ALERTS__LOG": "false",
        },
    )
    state = open_state(cfg.state.dir)
    clock = FakeClock(datetime.now().astimezone())
    alerting = Alerting(cfg, state, clock)
    poll = MlflowRegistry(mlflow, "alias", max_retries=1, timeout=10)
    prometheus = PrometheusObservations.from_config(
        cfg.monitor.prometheus, lambda m: cfg.monitor.policy_for(m).metric
    )
    monitor = Monitor(
        cfg.monitor,
        state,
        poll,
        Combined([FeedbackReader(poll), prometheus]),
        alerting,
        clock=clock,
        use_scheduler=False,
        observation_sources=[SOURCE],
    )
    monitor.start()
    rollback = AutoRollback(
        cfg.rollback,
        cfg.monitor.policy_for,
        monitor,
        MlflowRegistry(mlflow, "alias", max_retries=1, timeout=10),
        state,
        cfg.state.dir,
        clock,
        alerting,
    )
    rollback.start()
    return Daemon(cfg, state, clock, monitor, rollback, alerting, prometheus)


def publish(server: PrometheusServer, model: str, version: str, acc: float, n: float) -> None:
    labels = {"model": model, "version": version}
    expose(server, "model_accuracy", acc, labels)
    expose(server, "model_predictions_total", n, labels)


def test_breach_in_prometheus_fires_and_rolls_back(
    mlflow_server: str,
    prometheus_server: PrometheusServer,
    tmp_path: Path,
    built: list[Daemon],
) -> None:
    """0.97 over 500 predictions: ok; the exporter drops to 0.62: ModelAccuracyLow fires
    and `rollback.auto` moves Production back to v1, quarantining v2."""
    model = f"prom-{uuid.uuid4().hex[:6]}"
    register(mlflow_server, "alias", model, [{"accuracy": "0.95"}, {"accuracy": "0.96"}])
    d = daemon(mlflow_server, prometheus_server.url, tmp_path, model, "[rollback]\nauto = true\n")
    built.append(d)
    registry = MlflowRegistry(mlflow_server, "alias")

    publish(prometheus_server, model, "2", 0.97, 500)
    d.cycle()
    assert Status.OK == d.status(model)
    assert "2" == registry.production(model)
    (obs,) = d.monitor.observations(model, "2")
    assert (0.97, 500) == (obs.value, obs.samples)

    publish(prometheus_server, model, "2", 0.62, 800)
    d.cycle()
    assert "1" == registry.production(model)
    bad = registry.get_version(model, "2")
    assert bad is not None and bad.quarantined
    (alert,) = d.sent(ACCURACY_ALERT)
    assert (model, "2") == (alert["labels"]["model"], alert["labels"]["version"])
    assert "accuracy 0.6200 < 0.9000 over 800 samples" in str(alert["annotations"])
    assert 1 == len(d.sent("ModelRolledBack"))
    assert [] == d.sent(OBSERVATIONS_DOWN_ALERT)


def test_prometheus_down_is_an_outage_not_a_breach(
    mlflow_server: str, own_prometheus: PrometheusServer, tmp_path: Path, built: list[Daemon]
) -> None:
    """Prometheus stopped: the registry poll still counts, health says the source is down,
    one log line and event, the alert after down_alert_after; no breach, no rollback, even
    though the exporter now says 0.1. Started again: recovered (one line, one event, the
    alert resolved) and the breach it now sees fires."""
    model = f"prom-down-{uuid.uuid4().hex[:6]}"
    register(mlflow_server, "alias", model, [{"accuracy": "0.95"}, {"accuracy": "0.96"}])
    d = daemon(mlflow_server, own_prometheus.url, tmp_path, model, "[rollback]\nauto = true\n")
    built.append(d)
    registry = MlflowRegistry(mlflow_server, "alias")
    publish(own_prometheus, model, "2", 0.97, 500)
    d.cycle()
    assert Status.OK == d.status(model)
    assert d.monitor.health().detail["observations_reachable"] is True

    own_prometheus.stop()
    own_prometheus.exporter.set("model_accuracy", 0.1, model=model, version="2")
    with capture_logs() as logs:
        for _ in range(5):  # 150 s down: past down_alert_after (2 min)
            d.cycle()
    health = d.monitor.health()
    assert health.ok and not health.ready
    assert health.detail["mlflow_reachable"] is True  # MLflow was read all along
    assert health.detail["observations_reachable"] is False
    assert "observations_down_since" in health.detail
    assert str(health.detail["observations_error"]).startswith(
        f"prometheus: cannot reach {own_prometheus.url}"
    )
    down = [e for e in logs if e["event"] == "observations_unreachable"]
    assert 1 == len(down) and "prometheus" == down[0]["source"]
    assert ["monitor.observations_unreachable"] == d.kinds()
    (firing,) = d.sent(OBSERVATIONS_DOWN_ALERT)
    assert ("firing", "prometheus") == (firing["kind"], firing["labels"]["source"])
    assert Status.INCONCLUSIVE == d.status(model)  # no evidence: neither ok nor a breach
    assert [] == d.sent(ACCURACY_ALERT)
    assert "2" == registry.production(model)
    assert [] == d.state.events(kinds=["rollback.done"])

    own_prometheus.start()
    publish(own_prometheus, model, "2", 0.1, 500)
    with capture_logs() as logs:
        d.cycle()
    assert 1 == len([e for e in logs if e["event"] == "observations_reachable_again"])
    assert d.monitor.health().detail["observations_reachable"] is True
    assert d.monitor.health().ready
    assert [
        "monitor.observations_unreachable",
        "monitor.observations_reachable",
    ] == d.kinds()
    assert ["firing", "resolved"] == [a["kind"] for a in d.sent(OBSERVATIONS_DOWN_ALERT)]
    assert ["firing"] == [a["kind"] for a in d.sent(ACCURACY_ALERT)]
    assert "1" == registry.production(model)


def test_app_reads_prometheus_beside_mlflow(
    mlflow_server: str, prometheus_server: PrometheusServer, tmp_path: Path
) -> None:
    """The wiring: with monitor.prometheus.url the monitor's source is MLflow and Prometheus
    combined, and its health names the source before the first poll fails it."""
    model = f"prom-app-{uuid.uuid4().hex[:6]}"
    path = tmp_path / "watcher.toml"
    path.write_text(
        f'[monitor]\nmodels = ["{model}"]\n[monitor.prometheus]\nurl = "{prometheus_server.url}"\n'
        f"value_query = '{VALUE}'\nsamples_query = '{SAMPLES}'\n"
    )
    cfg = load_config(path, env={"WATCHER_STATE__DIR": str(tmp_path / "state")})
    state = open_state(cfg.state.dir)
    registry = MlflowRegistry(mlflow_server, "alias")
    alerting = Alerting(cfg, state, FakeClock())
    try:
        monitor = build_monitor(cfg, state, registry, alerting)
        assert isinstance(monitor.source, Combined)
        kinds = [type(s) for s in monitor.source.sources]
        assert [FeedbackReader, PrometheusObservations] == kinds
        assert monitor.health().detail["observations_reachable"] is False  # not polled yet
        for s in monitor.source.sources:
            if isinstance(s, PrometheusObservations):
                s.close()
    finally:
        alerting.stop()
        state.close()
