"""The story in stage mode, shorter: what differs from alias mode is the registry flow
and that the watcher's registry mode must reach the DAG (issue 13: a stage-mode watcher
drove an alias-mode DAG, so it never saw a Production version)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    EVENT_DEADLINE_S,
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
from tests.reliability.conftest import wait_for
from tests.services.airflow_server import AirflowServer

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.e2e]


def _stages(url: str, model: str) -> dict[str, str]:
    """version → stage of every version of ``model``."""
    versions = mlflow_client(url).search_model_versions(f"name = '{model}'")
    return {str(v.version): str(v.current_stage) for v in versions}


@pytest.mark.timeout(900)  # a real DAG run (and the servers, when this runs first)
def test_stage_mode_story(
    tmp_path: Path, real_dag: AirflowServer, mlflow_server: str, alertmanager: str
) -> None:
    """A stage-mode watcher with ``promote = "never"``: data → exactly one run, trained
    with the TOML's settings, registers v1 in stage Staging and promotes nothing (issue 13:
    the DAG ran in alias mode, with 100 trees, and promoted); the watcher sees v1 and no
    Production; SIGTERM → exit 0."""
    (tmp_path / "data").mkdir()
    daemon = Daemon(tmp_path, password=real_dag.password)
    model = f"e2e-stage-{uuid.uuid4().hex[:8]}"
    config = base_config(
        tmp_path, model, "stage", real_dag, mlflow_server, alertmanager, daemon.http_port
    )
    settings = {"n_estimators": 7, "max_depth": 2, "promote": "never", "threshold": 0.5}
    config["pipeline"] = {"model_name": model, **settings}
    write_toml(daemon.config, config)
    try:
        daemon.start()
        h1 = write_iris(tmp_path / "data" / "iris.csv", 0.11)
        run = wait_run(real_dag, f"data__{h1}", daemon)
        assert "success" == run["state"], run
        params = training_run(mlflow_client(mlflow_server), f"data__{h1}").data.params
        expected = {k: str(v) for k, v in settings.items()}
        assert {**expected, "registry_mode": "stage"} == {
            k: params.get(k) for k in [*settings, "registry_mode"]
        }
        assert [f"data__{h1}"] == list(dag_runs(real_dag, model))
        assert {"1": "Staging"} == _stages(mlflow_server, model)
        wait_for(
            lambda: "1" in (daemon.registry_view(model) or (None, {}))[1],
            EVENT_DEADLINE_S,
            "the watcher seeing v1",
        )
        assert (None, {"1": "Staging"}) == daemon.registry_view(model)
        assert gauge(daemon.metrics().decode(), "watcher_production_version", model=model) is None
        assert 0 == daemon.stop()
    finally:
        daemon.close()
