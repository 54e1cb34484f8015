"""The train_pipeline DAG: integrity, parse cost, and whole runs with dag.test().

Airflow runs in child processes (tests/pipeline/dag_runner.py) with their own
AIRFLOW_HOME, so its import-time configuration never leaks into other tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline import lineage, tracking
from tests.pipeline.conftest import EXAMPLE_DATA, REPO

RUNNER = Path(__file__).with_name("dag_runner.py")


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Nothing another test left in os.environ may steer these runs.
        if not k.startswith(("AIRFLOW", "WATCHER_", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"))
        and not k.startswith("MLFLOW_HTTP_")
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        PYTHONPATH=str(REPO),
        MLFLOW_CONFIGURE_LOGGING="false",
        **extra,
    )
    return env


def start_runner(env: dict[str, str], *args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(RUNNER), *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 280) -> tuple[Any, str]:
    out, _ = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert lines, out[-3000:]
    return json.loads(lines[-1].removeprefix("RESULT ")), out


@pytest.mark.slow
def test_dagbag_integrity_defaults_and_overrides(tmp_path: Path) -> None:
    """DagBag: no import errors, a parse that imports nothing heavy, chain and defaults; env
    shortens retries. (The parse time itself: benchmarks/dag_parse.py.)"""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    default = start_runner(airflow_env(tmp_path / "a"), "bag", cwd=tmp_path)
    short = start_runner(
        airflow_env(tmp_path / "b", WATCHER_DAG_RETRIES="0", WATCHER_DAG_RETRY_DELAY_SECONDS="1"),
        "bag",
        cwd=tmp_path,
    )
    facts, _ = finish(default)
    short_facts, _ = finish(short)
    assert {} == facts["import_errors"]
    assert ["train_pipeline"] == facts["dag_ids"]
    # Cheap to parse by construction: mlflow, sklearn and pandas load inside the tasks.
    heavy = {"mlflow", "sklearn", "pandas", "numpy", "scipy", "pyarrow"}
    assert heavy.isdisjoint(facts["parse_imported"]), facts["parse_imported"]
    # Airflow's own limit (core.dagbag_import_timeout) kills a parse after 30 s.
    assert facts["file_seconds"]["train_pipeline.py"] < 30.0
    tasks = facts["tasks"]
    assert ["train"] == tasks["preprocess"]["downstream"]
    assert ["register"] == tasks["train"]["downstream"]
    assert ["validate"] == tasks["register"]["downstream"]
    assert [] == tasks["validate"]["downstream"]
    for task in tasks.values():
        assert (2, 300.0) == (task["retries"], task["retry_delay"])
        assert ["pipeline.callbacks.on_failure"] == task["on_failure_callback"]
    assert ("None", False, "UTC") == (facts["schedule"], facts["catchup"], facts["start_date_tz"])
    assert {(0, 1.0)} == {(t["retries"], t["retry_delay"]) for t in short_facts["tasks"].values()}


# Unique per session: the MLflow server is shared with other test modules.
_RUN = uuid.uuid4().hex[:6]
MODES = {"alias": f"iris-classifier-{_RUN}", "stage": f"iris-classifier-stage-{_RUN}"}


@pytest.fixture(scope="module")
def dag_runs(
    mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], str, Path]:
    """One Airflow child process runs every dag.test() of this module (one migrate, one import).

    Per registry mode: a green run and a rerun on the same data; then one bad-data run.
    """
    from pipeline import sample_data

    root = tmp_path_factory.mktemp("dag-test")
    home = root / "airflow"
    home.mkdir()
    env = airflow_env(
        home,
        MLFLOW_TRACKING_URI=mlflow_server,
        WATCHER_DAG_RETRIES="0",
        WATCHER_DAG_RETRY_DELAY_SECONDS="1",
        WATCHER_ALERTS__FILE=str(root / "alerts.jsonl"),  # on_failure's channel
    )
    migrate = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert 0 == migrate.returncode, migrate.stderr[-2000:]
    data = root / "data"
    shutil.copytree(EXAMPLE_DATA, data)
    data_hash = lineage.dataset_hash(data)
    confs: list[dict[str, Any]] = []
    for mode, name in MODES.items():
        conf = {"data_dir": str(data), "data_hash": data_hash, "model_name": name}
        confs += [{**conf, "registry_mode": mode}] * 2
    bad = sample_data.corrupt("nan", root / "bad")
    confs.append({"data_dir": str(bad), "model_name": MODES["alias"]})
    (root / "confs.json").write_text(json.dumps(confs))
    results, log = finish(start_runner(env, "test", str(root / "confs.json"), cwd=root))
    (root / "runner.log").write_text(log)  # for post-mortems
    by_mode = {mode: results[2 * i : 2 * i + 2] for i, mode in enumerate(MODES)}
    return {**by_mode, "bad": results[-1]}, log, data


# The shared fixture (MLflow server, migrate, 5 dag.test runs) takes ~80 s on an idle
# 2-core box and more than the default 300 s budget when other suites run alongside.
@pytest.mark.timeout(600)
@pytest.mark.service
@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_dag_green_run_and_rerun(
    mode: str, mlflow_server: str, dag_runs: tuple[dict[str, Any], str, Path]
) -> None:
    """dag.test(): both runs green; v1 then v2 Production with lineage, hash, params, metrics."""
    import mlflow.sklearn
    import pandas as pd

    results, log, data = dag_runs
    first, second = results[mode]
    assert ("success", "success") == (first["state"], second["state"]), log[-4000:]
    name = MODES[mode]
    client = tracking.client(mlflow_server)
    v1, v2 = (client.get_model_version(name, v) for v in ("1", "2"))
    data_hash = lineage.dataset_hash(data)
    assert data_hash == v1.tags["data_hash"] == v2.tags["data_hash"]
    assert "1" == v2.tags["watcher.previous_production"]
    run1, run2 = client.get_run(str(v1.run_id)), client.get_run(str(v2.run_id))
    assert run1.info.run_id != run2.info.run_id
    assert (first["run_id"], second["run_id"]) == (
        run1.data.tags["dag_run_id"],
        run2.data.tags["dag_run_id"],
    )
    assert {"n_estimators", "max_depth"} <= set(run1.data.params)
    assert {"accuracy", "f1_score"} <= set(run1.data.metrics)
    uri = f"models:/{name}@production" if mode == "alias" else f"models:/{name}/Production"
    features = pd.read_csv(data / "iris.csv").drop(columns="target")
    assert 150 == len(mlflow.sklearn.load_model(uri).predict(features))


@pytest.mark.timeout(600)
@pytest.mark.service
@pytest.mark.slow
def test_dag_bad_data_fails_preprocess_and_registers_nothing(
    mlflow_server: str, dag_runs: tuple[dict[str, Any], str, Path]
) -> None:
    """Bad data fails preprocess (no retry), alerts via on_failure, registers no version."""
    results, log, data = dag_runs
    bad = results["bad"]
    assert "failed" == bad["state"]
    assert {"preprocess": "failed", "train": "upstream_failed"}.items() <= bad["tasks"].items()
    versions = tracking.client(mlflow_server).search_model_versions(f"name = '{MODES['alias']}'")
    assert {"1", "2"} == {str(v.version) for v in versions}
    assert "train_pipeline task failed" in log
    assert "task_id=preprocess" in log
    assert "column 'petal_length'" in log
    (alert,) = [json.loads(x) for x in (data.parent / "alerts.jsonl").read_text().splitlines()]
    assert {"alertname": "DagRunFailed", "task_id": "preprocess"}.items() <= alert["labels"].items()
    assert "column 'petal_length'" in alert["annotations"]["description"]


_GUARDED_PROBE = """
import json, runpy, sys
from pipeline.errors import BadInputError
from pipeline.steps import GateFailedError
guarded = runpy.run_path(sys.argv[1])["_guarded"]
out = {"ok": guarded(lambda: {"ok": 1})}
for exc in (BadInputError("bad conf"), GateFailedError("0.5 < 0.9"), ConnectionError("down")):
    def step(exc=exc):
        raise exc
    try:
        guarded(step)
    except Exception as raised:
        out[type(exc).__name__] = type(raised).__name__
print(json.dumps(out))
"""


def test_deterministic_failures_skip_retries_others_are_retried(tmp_path: Path) -> None:
    """Bad data, bad conf and a failed gate raise AirflowFailException (no retry); an
    MLflow outage keeps its own type, so Airflow retries it (retries=2, 5 min)."""
    proc = subprocess.run(
        [sys.executable, "-c", _GUARDED_PROBE, str(REPO / "dags" / "train_pipeline.py")],
        env=airflow_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert {
        "ok": {"ok": 1},
        "BadInputError": "AirflowFailException",
        "GateFailedError": "AirflowFailException",
        "ConnectionError": "ConnectionError",
    } == json.loads(proc.stdout.strip().splitlines()[-1])
