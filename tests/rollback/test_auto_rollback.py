"""Automatic rollback end to end against a real `mlflow server`, both registry modes.

Versions come from the real pipeline (which writes the lineage tag at promotion),
live accuracy goes in through the Python API, the monitor reads it back, and
time is a fake clock.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from watcher.backends.mlflow_observations import FeedbackReader, report_accuracy
from watcher.backends.mlflow_registry import MlflowRegistry
from watcher.cli.main import main
from watcher.config import Config, load_config
from watcher.monitor.poll import Monitor
from watcher.ports import RegistryMode
from watcher.rollback.auto import AutoRollback
from watcher.runtime.alerting import Alerting
from watcher.runtime.state import StateStore, open_state
from watcher.testing import FakeClock

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.service


@dataclass
class Rig:
    config: Config
    url: str
    model: str
    data: Path
    state: StateStore
    clock: FakeClock
    monitor: Monitor
    rollback: AutoRollback
    alerting: Alerting
    alerts_file: Path

    def train(self) -> None:
        from pipeline.run import main as pipeline_main

        argv = ["--data-dir", str(self.data), "--tracking-uri", self.url]
        argv += ["--model-name", self.model, "--registry-mode", self.config.mlflow.registry_mode]
        assert 0 == pipeline_main([*argv, "--promote", "always"])

    def report(self, version: str, accuracy: float) -> None:
        report_accuracy(
            self.model,
            accuracy,
            500,
            version=version,
            tracking_uri=self.url,
            registry_mode=self.config.mlflow.registry_mode,
            at=self.clock.now(),
        )

    def cycle(self) -> None:
        self.clock.advance(30)
        result = self.monitor.poll_once()
        assert result is not None and result.error is None, result
        self.monitor.tick()
        self.rollback.tick()
        self.alerting.tick()
        self.alerting._next = 0.0

    def sent(self, alertname: str) -> int:
        if not self.alerts_file.exists():
            return 0
        rows = [json.loads(x) for x in self.alerts_file.read_text().splitlines()]
        return sum(r["labels"]["alertname"] == alertname for r in rows)

    def close(self) -> None:
        self.alerting.stop()
        self.state.close()

    def restart(self, **env: str) -> None:
        """What a restart of the daemon does to these components: everything in memory is
        gone, and they are built again on the same state dir (config ``env`` changed)."""
        self.close()
        mode = self.config.mlflow.registry_mode
        fresh = build_rig(mode, self.url, self.data, env, self.model, self.clock.now())
        vars(self).update(vars(fresh))


def build_rig(
    mode: RegistryMode,
    url: str,
    data: Path,
    env: dict[str, str],
    model: str,
    start: datetime | None = None,
) -> Rig:
    cfg = load_config(
        env={
            "WATCHER_STATE__DIR": str(data.parent / "state"),
            "WATCHER_MLFLOW__TRACKING_URI": url,
            "WATCHER_MLFLOW__REGISTRY_MODE": mode,
            "WATCHER_MONITOR__MODELS": model,
            "WATCHER_MONITOR__WINDOW": "1",
            "WATCHER_ROLLBACK__AUTO": "true",
            "WATCHER_ROLLBACK__COOLDOWN": "0",
            "WATCHER_ROLLBACK__MAX_PER_WINDOW": "1",
            "WATCHER_ALERTS__LOG": "false",
            **env,
        }
    )
    state = open_state(cfg.state.dir)
    clock = FakeClock(start)
    alerting = Alerting(cfg, state, clock)
    poll_registry = MlflowRegistry(url, mode, max_retries=1, timeout=10)
    monitor = Monitor(
        cfg.monitor,
        state,
        poll_registry,
        FeedbackReader(poll_registry),
        alerting,
        clock=clock,
        use_scheduler=False,
    )
    monitor.start()
    rollback = AutoRollback(
        cfg.rollback,
        cfg.monitor.policy_for,
        monitor,
        MlflowRegistry(url, mode, max_retries=1, timeout=10),
        state,
        cfg.state.dir,
        clock,
        alerting,
    )
    rollback.start()
    return Rig(cfg, url, model, data, state, clock, monitor, rollback, alerting, cfg.alerts_file)


@pytest.fixture(params=["alias", "stage"])
def rig(request: pytest.FixtureRequest, mlflow_server: str, tmp_path: Path) -> Iterator[Rig]:
    mode: RegistryMode = request.param
    data = tmp_path / "data"
    shutil.copytree(REPO / "examples" / "data", data)
    built = build_rig(mode, mlflow_server, data, {}, f"auto-{mode}-{uuid.uuid4().hex[:6]}")
    yield built
    built.close()


def test_breach_rolls_back_once_then_flap_guard(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """v2 breaches → Production back to v1, v2 quarantined, one notice; v3 → alert only."""
    registry = MlflowRegistry(rig.url, rig.config.mlflow.registry_mode)
    rig.train()
    rig.train()
    assert "2" == registry.production(rig.model)
    assert "1" == registry.get_version(rig.model, "2").previous_production  # type: ignore[union-attr]

    rig.report("2", 0.97)
    rig.cycle()
    assert "2" == registry.production(rig.model)
    rig.report("2", 0.55)
    rig.cycle()
    assert "1" == registry.production(rig.model)
    bad = registry.get_version(rig.model, "2")
    assert bad is not None and bad.quarantined
    assert "registry-watcher (automatic)" == bad.tags["watcher.rolled_back_by"]
    if rig.config.mlflow.registry_mode == "stage":
        assert "Archived" == bad.stage
    assert 1 == rig.sent("ModelRolledBack")

    # The breach goes on (v2 still reports badly): no second rollback, no second notice.
    rig.report("2", 0.5)
    rig.cycle()
    rig.cycle()
    assert "1" == registry.production(rig.model)
    assert 1 == rig.sent("ModelRolledBack")

    # By hand, the quarantined v2 is refused unless forced.
    monkeypatch.setenv("WATCHER_MLFLOW__TRACKING_URI", rig.url)
    monkeypatch.setenv("WATCHER_MLFLOW__REGISTRY_MODE", rig.config.mlflow.registry_mode)
    monkeypatch.setenv("WATCHER_STATE__DIR", str(rig.config.state.dir))
    assert 2 == main(["rollback", "--model", rig.model, "--to", "2", "--yes"])
    assert "quarantined" in capsys.readouterr().err

    # Flap guard: v3 promoted and breaching within the window after 1 rollback → alert only.
    rig.train()
    assert "3" == registry.production(rig.model)
    rig.report("3", 0.4)
    rig.cycle()
    assert "3" == registry.production(rig.model)
    assert 1 == rig.sent("ModelRolledBack")
    assert 1 == rig.sent("RollbackRefused")
    refused = rig.state.events(kinds=["rollback.refused"])
    assert 1 == len(refused) and "flap guard" in refused[0].message


def test_undo_survives_restart_new_episode_may_roll_back(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an automatic rollback and an operator's undo, neither the running daemon nor a
    restarted one rolls the restored version back for the same breach; once its accuracy
    recovers and breaches again (a new episode), it is rolled back (#13)."""
    registry = MlflowRegistry(rig.url, rig.config.mlflow.registry_mode)
    rig.train()
    rig.train()
    rig.report("2", 0.55)
    rig.cycle()
    assert "1" == registry.production(rig.model)

    monkeypatch.setenv("WATCHER_MLFLOW__TRACKING_URI", rig.url)
    monkeypatch.setenv("WATCHER_MLFLOW__REGISTRY_MODE", rig.config.mlflow.registry_mode)
    monkeypatch.setenv("WATCHER_STATE__DIR", str(rig.config.state.dir))
    monkeypatch.setenv("WATCHER_ALERTS__LOG", "false")
    assert 0 == main(["rollback", "--model", rig.model, "--undo", "--yes", "--reason", "no"])
    assert "2" == registry.production(rig.model)
    journal = rig.rollback.rollbacker.automatic_times(rig.model)
    assert 1 == len(journal)

    rig.cycle()  # the running daemon: v2 still breaches, the operator's choice stands
    rig.restart(WATCHER_ROLLBACK__MAX_PER_WINDOW="5")
    rig.cycle()
    rig.cycle()
    assert "2" == registry.production(rig.model)
    assert journal == rig.rollback.rollbacker.automatic_times(rig.model)
    assert rig.monitor.verdicts()[rig.model].firing  # still breaching, still left alone

    rig.report("2", 0.97)  # recovered: the episode ends
    rig.cycle()
    assert not rig.monitor.verdicts()[rig.model].firing
    rig.report("2", 0.5)  # a new episode
    rig.cycle()
    assert "1" == registry.production(rig.model)
    assert 2 == len(rig.rollback.rollbacker.automatic_times(rig.model))
