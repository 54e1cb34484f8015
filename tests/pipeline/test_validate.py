"""The quality gate: exit 0 at/above the threshold, 1 below, 2 on bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.validate import main
from tests.pipeline.conftest import REPO
from tests.pipeline.test_register import WEAK, run


@pytest.fixture(scope="module")
def gate_model(registry_uri: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One good (v1) and one weak (v2) version of a model reserved for gate tests."""
    import shutil

    from tests.pipeline.conftest import EXAMPLE_DATA

    data = tmp_path_factory.mktemp("gate") / "data"
    shutil.copytree(EXAMPLE_DATA, data)
    good = run(registry_uri, data, "gate-model", "alias")
    weak = run(registry_uri, data, "gate-model", "alias", **WEAK)
    return {"good": good["version"], "weak": weak["version"], "good_run": good["run_id"]}


def test_pass_and_fail_in_process(
    registry_uri: str, gate_model: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A good version passes (0), a weak one fails (1), by version, alias or run id."""
    base = ["--tracking-uri", registry_uri, "--model", "gate-model", "--threshold", "0.9"]
    assert 0 == main([*base, "--version", gate_model["good"]])
    assert capsys.readouterr().out.startswith("PASS accuracy=")
    assert 1 == main([*base, "--version", gate_model["weak"]])
    assert capsys.readouterr().out.startswith("FAIL accuracy=")
    assert 0 == main([*base, "--alias", "production"])
    assert 0 == main(["--tracking-uri", registry_uri, "--run-id", gate_model["good_run"]])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no-such-model", "--version", "1"], "not found"),
        (["--model", "gate-model", "--version", "99"], "not found"),
        (["--model", "gate-model", "--version", "one"], "positive integer"),
        (["--model", "gate-model", "--alias", "nope"], "not found"),
        (["--run-id", "0123456789abcdef0123456789abcdef"], "not found"),
        (["--run-id", "x", "--model", "gate-model"], "either"),
        (["--model", "gate-model", "--version", "1", "--metric", "nope"], "unknown metric 'nope'"),
        (
            ["--model", "gate-model", "--version", "1", "--metric", "rmse", "--threshold", "40"],
            "has no metric 'rmse'",
        ),
    ],
)
def test_bad_input_exit_2_one_line(
    args: list[str],
    message: str,
    registry_uri: str,
    gate_model: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Unknown model/version/alias/run/metric exit 2 with a one-line error, no traceback."""
    assert 2 == main(["--tracking-uri", registry_uri, *args])
    err = capsys.readouterr().err
    assert 1 == len(err.strip().splitlines())
    assert err.startswith("error: ")
    assert message in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "rmse"], "--threshold: required for rmse"),
        (["--metric", "r2", "--threshold", "5"], "--threshold: expected a finite number"),
        (["--metric", "rmse", "--threshold", "-1"], "--threshold: expected a finite number"),
        (["--metric", "rmse", "--threshold", "inf"], "--threshold: expected a finite number"),
        (["--threshold", "inf"], "--threshold: expected a finite number"),
        (["--threshold", "nan"], "--threshold: expected a finite number"),
        (["--threshold", "1.01"], "--threshold: expected a finite number in [0.0, 1.0]"),
        (["--metric", "nope"], "--metric: unknown metric 'nope'"),
    ],
)
def test_gate_settings_refused_before_mlflow(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The metric catalogue settles the gate first: a missing, out-of-range or infinite
    threshold is exit 2 naming the option, before MLflow is asked (an unreachable
    tracking server would be exit 1, a backend failure)."""
    dead = ["--tracking-uri", "http://127.0.0.1:9", "--model", "m", "--version", "1"]
    assert 2 == main([*dead, *args])
    err = capsys.readouterr().err
    assert err == f"error: {err[len('error: ') :]}" and 1 == len(err.strip().splitlines())
    assert message in err


@pytest.mark.slow
def test_cli_subprocess_exit_codes(registry_uri: str, gate_model: dict[str, str]) -> None:
    """`python -m pipeline.validate` exits 1 below and 0 at/above the threshold (env URI)."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry_uri, "PYTHONPATH": str(REPO)}

    def gate(version: str) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "pipeline.validate", "--model", "gate-model"]
        return subprocess.Popen(
            [*cmd, "--version", version, "--threshold", "0.9"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # Both at once: each child spends most of its time importing mlflow.
    procs = [gate(gate_model["weak"]), gate(gate_model["good"])]
    (weak_out, weak_err), (good_out, good_err) = (p.communicate(timeout=180) for p in procs)
    assert (1, 0) == (procs[0].returncode, procs[1].returncode), weak_err + good_err
    assert "FAIL" in weak_out
    assert "PASS" in good_out
    assert "Traceback" not in weak_err + good_err
    assert Path(registry_uri.removeprefix("sqlite:///")).exists()
