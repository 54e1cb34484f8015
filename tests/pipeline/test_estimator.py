"""Issue 19 §1: any scikit-learn-style estimator, regression as well as classification,
gated on the configured metric in its direction; refused by key before training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline import estimator, lineage, tracking
from pipeline.errors import SettingError
from pipeline.run import main as run_main
from pipeline.validate import main as validate_main
from tests.pipeline.models import diabetes_csv
from watcher.cli.main import main as watcher_main
from watcher.config import load_config
from watcher.trigger.base import pipeline_settings

RIDGE = "sklearn.linear_model.Ridge"


def _check_config(tmp_path: Path, toml: str) -> tuple[int, str]:
    path = tmp_path / "watcher.toml"
    path.write_text(f"[pipeline]\n{toml}\n", encoding="utf-8")
    code = watcher_main(["--config", str(path), "check-config"])
    return code, path.name


@pytest.mark.parametrize(
    ("toml", "key", "detail"),
    [
        ('estimator = "sklearn.nope.Forest"', "estimator", "cannot import 'sklearn.nope'"),
        ('estimator = "sklearn.ensemble:Nope"', "estimator", "has no 'Nope'"),
        ('estimator = "json.JSONDecoder"', "estimator", "is not an estimator"),
        ('estimator = "os.path:join"', "estimator", "calling os.path:join() failed"),
        ('estimator = "sys:exit"', "estimator", "calling sys:exit() failed"),
        (f'estimator = "{"m" * 500}.X"', "estimator", f"cannot import '{'m' * 120}…'"),
        (f'estimator = "{RIDGE}"\nparams = {{ alfa = 1 }}', "params.alfa", "not a parameter"),
        (f'estimator = "{RIDGE}"\nparams = {{ alpha = -1 }}', "params", "'alpha' parameter"),
        ("params = { n_estimators = 5 }", "params.n_estimators", "set n_estimators itself"),
        (f'estimator = "{RIDGE}"\nn_estimators = 5', "n_estimators", "default estimator only"),
        ('metric = "auc"', "metric", "unknown metric 'auc'"),
        ('task = "regression"\nmetric = "accuracy"', "metric", "classification metric"),
        (f'estimator = "{RIDGE}"\nmetric = "f1_score"', "metric", "regression estimator"),
        (f'estimator = "{RIDGE}"\ntask = "classification"', "task", "regression estimator"),
        ('metric = "rmse"\nthreshold = 40', "metric", "classification estimator"),
        ("threshold = 40", "threshold", "[0.0, 1.0] for accuracy"),
        ('metric = "rmse"\nthreshold = -1', "threshold", "[0.0, inf] for rmse"),
        (f'estimator = "{RIDGE}"', "threshold", "required for rmse"),
    ],
)
def test_check_config_refuses_by_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, key: str, detail: str
) -> None:
    """A bad estimator path, param, metric or direction/range conflict: exit 2, one line
    naming the key, no traceback, before anything is trained."""
    code, _ = _check_config(tmp_path, toml)
    err = capsys.readouterr().err
    assert 2 == code, err
    assert err.startswith(f"error: pipeline.{key}: "), err
    assert detail in err
    assert 1 == len(err.strip().splitlines()) and "Traceback" not in err


def test_check_config_shows_the_resolved_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The seed's default is unchanged (RandomForest, accuracy >= 0.9); a factory with its
    params and a regression metric is accepted and its gate filled in."""
    code, _ = _check_config(tmp_path, "")
    seed = json.loads(capsys.readouterr().out)["pipeline"]
    assert 0 == code
    assert {
        "estimator": estimator.DEFAULT_ESTIMATOR,
        "params": {},
        "task": "classification",
        "metric": "accuracy",
        "threshold": 0.9,
        "n_estimators": 100,
        "max_depth": None,
    }.items() <= seed.items()
    toml = 'estimator = "tests.pipeline.models:scaled_ridge"\nparams = { alpha = 2.0 }\n'
    code, _ = _check_config(tmp_path, toml + 'metric = "mae"\nthreshold = 50')
    own = json.loads(capsys.readouterr().out)["pipeline"]
    assert 0 == code
    assert ("regression", "mae", 50.0) == (own["task"], own["metric"], own["threshold"])


def test_task_is_inferred_from_the_estimator_else_the_target() -> None:
    import pandas as pd

    resolved = estimator.resolve(RIDGE, {}, task=None, metric=None, threshold=30.0)
    assert ("regression", "rmse", "estimator") == (
        resolved.gate.task,
        resolved.gate.metric,
        resolved.task_source,
    )
    # A clusterer states no task: the target decides (fractions: a regression).
    kmeans = "sklearn.cluster.KMeans"
    target = pd.Series(["0.5", "1.25", "3.0"])
    by_target = estimator.resolve(kmeans, {}, task=None, metric=None, threshold=1, target=target)
    assert ("regression", "target") == (by_target.gate.task, by_target.task_source)
    labels = pd.Series([0, 1, 2, 1])
    assert "classification" == estimator.target_task(labels)
    assert "regression" == estimator.target_task(pd.Series(range(100)))
    with pytest.raises(SettingError, match="threshold: required for rmse"):
        estimator.resolve(RIDGE, {}, task=None, metric=None, threshold=None)


@pytest.fixture
def diabetes_dir(tmp_path: Path) -> Path:
    return diabetes_csv(tmp_path / "data")  # type: ignore[no-any-return]


def _train(uri: str, data_dir: Path, name: str, capsys: Any, **pipeline: object) -> dict[str, Any]:
    """One run as the watcher sends it: its [pipeline] config → run conf → pipeline.run."""
    overrides = {f"pipeline.{k}": v for k, v in {"model_name": name, **pipeline}.items()}
    cfg = load_config(None, env={}, overrides=overrides)
    conf = {**pipeline_settings(cfg), "data_hash": lineage.dataset_hash(data_dir)}
    argv = ["--data-dir", str(data_dir), "--tracking-uri", uri, "--conf", json.dumps(conf)]
    assert 0 == run_main(argv), capsys.readouterr().err
    summary: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return summary


def test_regression_from_config_gated_on_rmse_and_held_when_worse(
    mlflow_server: str, diabetes_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A regression trained from config (a factory with params), logged with rmse/mae/r2,
    signature, input example and pip requirements; the gate passes at or below its rmse;
    a worse candidate that still passes the gate is held by if_better (same split)."""
    import mlflow

    name = "diabetes-estimator-test"
    gate = {"metric": "rmse", "threshold": 100.0}
    v1 = _train(
        mlflow_server,
        diabetes_dir,
        name,
        capsys,
        estimator="tests.pipeline.models:scaled_ridge",
        params={"alpha": 1.0},
        **gate,
    )
    assert (True, "regression", "rmse") == (v1["promoted"], v1["task"], v1["metric"])
    client = tracking.client(mlflow_server)
    run = client.get_run(v1["run_id"])
    assert {"rmse", "mae", "r2"} <= set(run.data.metrics)
    assert "accuracy" not in run.data.metrics
    assert ("regression", "regression", "configured", "1.0") == (
        run.data.tags["task"],
        run.data.params["task"],
        run.data.params["task_source"],
        run.data.params["alpha"],
    )
    info = mlflow.models.get_model_info(f"models:/{name}/1")
    assert info.signature is not None and info.saved_input_example_info is not None
    files = {Path(f.path).name for f in client.list_artifacts(v1["run_id"], "model")}
    files |= {Path(f.path).name for f in mlflow.artifacts.list_artifacts(info.model_uri)}
    assert "requirements.txt" in files
    tags = client.get_model_version(name, "1").tags
    assert float(tags["rmse"]) == pytest.approx(v1["rmse"])

    # The gate on rmse: passes at its value (at or below), fails just under it.
    at = ["--tracking-uri", mlflow_server, "--model", name, "--version", "1", "--metric", "rmse"]
    assert 0 == validate_main([*at, "--threshold", repr(v1["rmse"])])
    assert capsys.readouterr().out.startswith("PASS rmse=")
    assert 1 == validate_main([*at, "--threshold", repr(v1["rmse"] - 0.01)])
    assert capsys.readouterr().out.startswith("FAIL rmse=")

    # A mean predictor: within the gate (rmse <= 100) but worse than Production: held.
    v2 = _train(
        mlflow_server, diabetes_dir, name, capsys, estimator="sklearn.dummy.DummyRegressor", **gate
    )
    assert (True, False, "1") == (v2["gate_passed"], v2["promoted"], v2["production"])
    assert v2["rmse"] > v1["rmse"]
    assert v2["production_score"] == pytest.approx(v1["rmse"])  # same split, same metric
    assert "worse than Production's" in v2["reason"] and v2["reason"].startswith("rmse ")
    assert "sklearn.dummy.DummyRegressor" == client.get_run(v2["run_id"]).data.params["estimator"]


def test_a_team_dag_gets_the_gate_but_not_the_estimator_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With trigger.dag_id naming a team's own DAG, the shipped estimator is not trained:
    a regression gate with the default estimator is fine and an estimator that does not
    import here is not imported; the gate itself is still checked by key."""
    trigger = '[trigger]\nbackend = "airflow"\ndag_id = "diabetes_regression"\n'
    path = tmp_path / "watcher.toml"
    path.write_text(
        f'{trigger}[pipeline]\nmetric = "rmse"\nthreshold = 60\nestimator = "teampkg.nope:X"\n',
        encoding="utf-8",
    )
    assert 0 == watcher_main(["--config", str(path), "check-config"])
    assert '"metric": "rmse"' in capsys.readouterr().out
    path.write_text(f'{trigger}[pipeline]\nmetric = "rmse"\n', encoding="utf-8")
    assert 2 == watcher_main(["--config", str(path), "check-config"])
    assert capsys.readouterr().err.startswith("error: pipeline.threshold: required for rmse")
