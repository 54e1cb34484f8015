"""The story in stage mode, shorter: what differs from alias mode is the registry flow
and that the watcher's registry mode must reach the DAG (issue 13: a stage-mode watcher
drove an alias-mode DAG, so it never saw a Production version)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    Daemon,
    base_config,
    dag_runs,
    gauge,
    mlflow_client,
    training_run,
    wait_run,
    write_iris,
    write_toml,
)
from tests.services.airflow_server import AirflowServer

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.e2e]


def _stages(url: str, model: str) -> dict[str, str]:
    """version → stage of every version of ``model``."""
    versions = mlflow_client(url).search_model_versions(f"name = '{model}'")
    return {str(v.version): str(v.current_stage) for v in versions}


@pytest.mark.timeout(900)  # two real DAG runs (and the servers, when this runs first)
def test_stage_mode_story(
    tmp_path: Path, real_dag: AirflowServer, mlflow_server: str, alertmanager: str
) -> None:
    """Data → one run → v1 in stage Production, seen by the watcher; the operator sets
    ``promote = "never"``, restarts, new data → one run trained with the TOML's settings
    registers v2 without promoting it (issue 13: the DAG promoted it anyway)."""
    (tmp_path / "data").mkdir()
    daemon = Daemon(tmp_path, password=real_dag.password)
    model = f"e2e-stage-{uuid.uuid4().hex[:8]}"
    config = base_config(
        tmp_path, model, "stage", real_dag, mlflow_server, alertmanager, daemon.http_port
    )
    pipeline: dict[str, object] = {"model_name": model, "n_estimators": 7, "max_depth": 2}
    config["pipeline"] = {**pipeline, "promote": "always", "threshold": 0.5}
    write_toml(daemon.config, config)
    try:
        daemon.start()
        h1 = write_iris(tmp_path / "data" / "iris.csv", 0.11)
        run = wait_run(real_dag, f"data__{h1}", daemon)
        assert "success" == run["state"], run
        assert {"1": "Production"} == _stages(mlflow_server, model)
        daemon.wait_event("registry.production_changed", "the watcher seeing v1", model=model)
        assert 1 == gauge(daemon.metrics().decode(), "watcher_production_version", model=model)
        assert 0 == daemon.stop()

        config["pipeline"] = {**pipeline, "promote": "never", "threshold": 0.5}
        write_toml(daemon.config, config)
        daemon.start()
        h2 = write_iris(tmp_path / "data" / "iris.csv", 0.12)
        run = wait_run(real_dag, f"data__{h2}", daemon)
        assert "success" == run["state"], run
        assert {f"data__{h1}", f"data__{h2}"} == set(dag_runs(real_dag, model))
        params = training_run(mlflow_client(mlflow_server), f"data__{h2}").data.params
        assert {"n_estimators": "7", "max_depth": "2", "promote": "never"}.items() <= (
            params.items()
        )
        assert "stage" == params["registry_mode"]
        assert "Production" == _stages(mlflow_server, model)["1"]
        assert "Production" != _stages(mlflow_server, model)["2"]
        assert 0 == daemon.stop()
    finally:
        daemon.close()
