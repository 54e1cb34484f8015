"""Acceptance against a real `mlflow server`: live accuracy in, alert lifecycle out.

Registered versions come from the real pipeline (pipeline.run); observations go
in through `watcher report-accuracy` and the Python API; the monitor reads them
back with the MLflow adapter. Time is a fake clock, so `for` and
repeat_interval take no wall time.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.monitor.conftest import CHANNELS, Channels
from watcher import report_accuracy
from watcher.backends.mlflow_observations import FeedbackReader
from watcher.backends.mlflow_registry import MlflowRegistry
from watcher.cli.main import main
from watcher.config import MonitorConfig
from watcher.monitor.accuracy import ACCURACY_ALERT
from watcher.monitor.policy import Status
from watcher.monitor.poll import Monitor
from watcher.runtime.state import StateStore
from watcher.testing import FakeClock

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.service


def train(url: str, data: Path, model: str) -> None:
    """Run the real pipeline once: trains, registers and promotes a version."""
    from pipeline.run import main as pipeline_main

    argv = ["--data-dir", str(data), "--tracking-uri", url, "--model-name", model]
    assert 0 == pipeline_main([*argv, "--promote", "always"])


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(REPO / "examples" / "data", out)
    return out


@pytest.fixture
def cli_env(mlflow_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHER_MLFLOW__TRACKING_URI", mlflow_server)
    monkeypatch.setenv("WATCHER_STATE__DIR", str(tmp_path / "cli-state"))
    monkeypatch.chdir(tmp_path)


def report_cli(model: str, accuracy: float, samples: int, at: datetime) -> int:
    return main(
        [
            "report-accuracy",
            *("--model", model, "--accuracy", str(accuracy)),
            *("--samples", str(samples), "--at", at.isoformat()),
        ]
    )


def monitor(
    url: str, model: str, state: StateStore, clock: FakeClock, channels: Channels
) -> Monitor:
    cfg = MonitorConfig.model_validate(
        {"models": [model], "min_accuracy": 0.9, "window": 2, "min_samples": 100, "for": "10m"}
    )
    channels.alerting.clock = clock  # one time for the monitor and the alerts it raises
    registry = MlflowRegistry(url, "alias", max_retries=1, timeout=10)
    mon = Monitor(
        cfg,
        state,
        registry,
        FeedbackReader(registry),
        channels.alerting,
        clock=clock,
        use_scheduler=False,
    )
    mon.start()
    return mon


def cycle(mon: Monitor, channels: Channels, clock: FakeClock) -> Status:
    result = mon.poll_once()
    assert result is not None and result.error is None, result
    mon.tick()
    channels.dispatcher.deliver_due(clock.now())
    return mon.verdicts()[mon.config.models[0]].status


def test_live_accuracy_alert_lifecycle(
    mlflow_server: str,
    data_dir: Path,
    cli_env: None,
    state: StateStore,
    channels: Channels,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """ok → pending → firing after `for`; one firing per channel, one repeat, one resolved."""
    model = "accept-iris"
    train(mlflow_server, data_dir, model)
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    mon = monitor(mlflow_server, model, state, clock, channels)

    assert 0 == report_cli(model, 0.97, 200, clock.now())
    assert "accept-iris v1: accuracy 0.97 over 200 samples" in capsys.readouterr().out
    assert Status.OK == cycle(mon, channels, clock)
    # What `watcher status` shows comes from the state DB: training and live accuracy.
    row = state.conn.execute(
        "SELECT training_accuracy, live_accuracy, live_samples FROM registry_models"
        " WHERE model = ?",
        (model,),
    ).fetchone()
    assert row[0] is not None and 0.9 <= row[0] <= 1.0
    assert (0.97, 200) == (row[1], row[2])

    clock.advance(60)
    assert 0 == report_cli(model, 0.6, 300, clock.now())  # window: 0.748 over 500
    assert Status.PENDING == cycle(mon, channels, clock)
    clock.advance(599)
    assert Status.PENDING == cycle(mon, channels, clock)
    clock.advance(1)
    assert Status.FIRING == cycle(mon, channels, clock)
    clock.advance(3600)
    assert Status.FIRING == cycle(mon, channels, clock)
    for ch in CHANNELS:
        assert ["firing"] == channels.sent(ch, ACCURACY_ALERT)

    clock.advance(4 * 3600)
    assert Status.FIRING == cycle(mon, channels, clock)
    for ch in CHANNELS:
        assert ["firing", "repeat"] == channels.sent(ch, ACCURACY_ALERT)

    for _ in range(2):
        clock.advance(60)
        report_accuracy(model, 0.99, 1000, at=clock.now(), registry=mon.registry)  # type: ignore[arg-type]
    assert Status.RESOLVED == cycle(mon, channels, clock)
    assert Status.OK == cycle(mon, channels, clock)
    for ch in CHANNELS:
        assert ["firing", "repeat", "resolved"] == channels.sent(ch, ACCURACY_ALERT)
    reported = mon.verdicts()[model]
    assert (0.99, 2000) == (reported.value, reported.samples)


def test_below_min_samples_stays_inconclusive(
    mlflow_server: str, data_dir: Path, state: StateStore, channels: Channels
) -> None:
    """Bad accuracy on fewer than min_samples never leaves inconclusive, never alerts."""
    model = "accept-few"
    train(mlflow_server, data_dir, model)
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    mon = monitor(mlflow_server, model, state, clock, channels)
    for _ in range(4):
        report_accuracy(model, 0.2, 20, at=clock.now(), registry=mon.registry)  # type: ignore[arg-type]
        assert Status.INCONCLUSIVE == cycle(mon, channels, clock)
        clock.advance(3600)
    assert [] == channels.sent("ops", ACCURACY_ALERT)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--model", "accept-bad", "--accuracy", "1.5", "--samples", "10"], "[0, 1]"),
        (["--model", "accept-bad", "--accuracy", "0.5", "--samples", "0"], "samples"),
        (["--model", "no-such-model", "--accuracy", "0.5", "--samples", "10"], "no-such-model"),
        (
            ["--model", "accept-bad", "--version", "99", "--accuracy", "0.5", "--samples", "9"],
            "no version 99",
        ),
        (["--model", "accept-bad", "--accuracy", "0.5", "--samples", "9", "--at", "x"], "--at"),
    ],
    ids=["accuracy-range", "samples", "unknown-model", "unknown-version", "bad-time"],
)
def test_report_accuracy_bad_input_exit_2(
    mlflow_server: str,
    data_dir: Path,
    cli_env: None,
    args: list[str],
    reason: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Bad input → exit 2 with one line naming what is wrong."""
    registry = MlflowRegistry(mlflow_server)
    if not registry.model_exists("accept-bad"):
        train(mlflow_server, data_dir, "accept-bad")
    assert 2 == main(["report-accuracy", *args])
    # Last line: an earlier test's logging setup may still write to its own captured stream.
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert reason in last and last.startswith("error: ")
