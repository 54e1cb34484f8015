"""`watcher report-metric`: bad input is refused before MLflow is reached (exit 2, one line).

The happy path against a real `mlflow server` is in tests/monitor/test_any_metric.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watcher.cli.main import main

SOON = (datetime.now(UTC) + timedelta(hours=1)).isoformat()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "rmsle", "--value", "1"], "--metric: unknown metric 'rmsle' (known: "),
        (["--metric", "rmse", "--value", "-0.5"], "--value: rmse must be a finite number >= 0"),
        (["--metric", "r2", "--value", "1.5"], "--value: r2 must be a finite number <= 1, got 1.5"),
        (
            ["--metric", "accuracy", "--value", "1.5"],
            "--value: accuracy must be a finite number in",
        ),
        (
            ["--metric", "mae", "--value", "nan"],
            "--value: mae must be a finite number >= 0, got nan",
        ),
        (
            ["--metric", "rmse", "--value", "inf"],
            "--value: rmse must be a finite number >= 0, got inf",
        ),
        (
            ["--metric", "r2", "--value", "-inf"],
            "--value: r2 must be a finite number <= 1, got -inf",
        ),
        (["--metric", "rmse", "--value", "3", "--samples", "0"], "--samples: must be an integer"),
        (
            ["--metric", "rmse", "--value", "3", "--samples", "10000000000000"],
            "--samples: must be at most",
        ),
        (["--metric", "rmse", "--value", "3", "--at", SOON], "--at: 20"),
        (["--metric", "rmse", "--value", "3", "--version", "x"], "--version: 'x' is not"),
    ],
    ids=[
        "metric",
        "rmse-range",
        "r2-range",
        "accuracy-range",
        "nan",
        "inf",
        "-inf",
        "samples",
        "samples-max",
        "future",
        "ver",
    ],
)
def test_bad_input_exit_2_naming_the_field(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    # Unreachable on purpose: a refusal must come before any MLflow call.
    monkeypatch.setenv("WATCHER_MLFLOW__TRACKING_URI", "http://127.0.0.1:9")
    argv = ["report-metric", "--model", "m", *args]
    if "--samples" not in args:
        argv += ["--samples", "10"]
    assert 2 == main(argv)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and message in line, line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--accuracy", "inf", "--samples", "10"], "--accuracy: accuracy must be a finite number"),
        (["--accuracy", "0.5", "--samples", "0"], "--samples: must be an integer >= 1"),
    ],
)
def test_report_accuracy_names_its_options(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WATCHER_MLFLOW__TRACKING_URI", "http://127.0.0.1:9")
    assert 2 == main(["report-accuracy", "--model", "m", *args])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
