"""`python -m pipeline.run`: the pipeline without Airflow, its summary and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline import lineage, tracking
from pipeline.run import main
from tests.pipeline.conftest import REPO
from tests.services.mlflow_server import free_port

PIPELINE_RUN = [sys.executable, "-m", "pipeline.run"]
STAGE = ["--registry-mode", "stage"]


def _registered(uri: str, name: str) -> bool:
    return any(m.name == name for m in tracking.client(uri).search_registered_models())


def test_summary_line(
    registry_uri: str, iris_dir: Path, model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run prints one JSON summary line and tags the run with data_hash and dag_run_id."""
    data_hash = lineage.dataset_hash(iris_dir)
    argv = ["--data-dir", str(iris_dir), "--model-name", model_name, "--data-hash", data_hash]
    assert 0 == main([*argv, "--tracking-uri", registry_uri, "--dag-run-id", "data__abc"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {
        "version": "1",
        "promoted": True,
        "data_hash": data_hash,
        "gate_passed": True,
    }.items() <= (summary.items())
    tags = tracking.client(registry_uri).get_run(summary["run_id"]).data.tags
    assert ("data__abc", data_hash) == (tags["dag_run_id"], tags["data_hash"])


def test_hash_mismatch_exit_2_nothing_registered(
    registry_uri: str, iris_dir: Path, model_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Data changed since the trigger: exit 2 before training, naming both hashes."""
    wanted = lineage.dataset_hash(iris_dir)
    with (iris_dir / "iris.csv").open("a") as fh:
        fh.write("5.0,3.0,1.5,0.2,0\n")
    argv = ["--data-dir", str(iris_dir), "--model-name", model_name, "--data-hash", wanted]
    assert 2 == main([*argv, "--tracking-uri", registry_uri])
    err = capsys.readouterr().err
    assert wanted in err
    assert lineage.dataset_hash(iris_dir) in err
    assert not _registered(registry_uri, model_name)


@pytest.mark.parametrize("kind", ["non_numeric", "header_mismatch"])
def test_bad_data_exit_2_nothing_registered(
    kind: str,
    registry_uri: str,
    model_name: str,
    make_variant: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Bad data exits 2 with file and column in a one-line error; no model is registered."""
    argv = ["--data-dir", str(make_variant(kind)), "--model-name", model_name]
    assert 2 == main([*argv, "--tracking-uri", registry_uri])
    err = capsys.readouterr().err
    assert 1 == len(err.strip().splitlines())
    assert "file '" in err
    assert "column '" in err
    assert not _registered(registry_uri, model_name)


def test_unreachable_backend_exit_1(
    iris_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """MLflow unreachable: exit 1 with a one-line backend error."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri = f"http://127.0.0.1:{free_port()}"
    assert 1 == main(["--data-dir", str(iris_dir), "--tracking-uri", uri])
    err = capsys.readouterr().err
    assert err.startswith("error: backend failure")
    assert 1 == len(err.strip().splitlines())


@pytest.mark.service
@pytest.mark.slow
def test_cli_against_mlflow_server(mlflow_server: str, iris_dir: Path) -> None:
    """`python -m pipeline.run` against a real server (MLFLOW_TRACKING_URI) registers a model."""
    import mlflow.sklearn
    import pandas as pd

    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [*PIPELINE_RUN, "--data-dir", str(iris_dir), "--model-name", "run-cli-model", *STAGE],
        env=env,
        cwd=iris_dir.parent,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert 0 == proc.returncode, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (True, lineage.dataset_hash(iris_dir)) == (summary["promoted"], summary["data_hash"])
    tracking.client(mlflow_server)
    model = mlflow.sklearn.load_model("models:/run-cli-model/Production")
    features = pd.read_csv(iris_dir / "iris.csv").drop(columns="target")
    assert 150 == len(model.predict(features))
