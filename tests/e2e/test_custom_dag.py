"""Issue 19 §3: a team's own DAG under the watcher. ``examples/custom_dag`` (DAG id
``diabetes_regression``, its own training function, the ``pipeline.api`` helpers) runs
in the session's real Airflow, triggered by `watcher run` through ``trigger.dag_id``;
its model's lineage lets `watcher rollback` move Production back. Small data (the
diabetes dataset, a few hundred rows), one short task per run."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.lineage import compute_manifest
from tests.e2e.conftest import (
    RUN_DEADLINE_S,
    Daemon,
    mlflow_client,
    write_toml,
)
from tests.reliability.conftest import wait_for
from tests.services.airflow_server import EXAMPLE_DAGS, AirflowServer

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.e2e]

CUSTOM_DAG = "diabetes_regression"
REGISTER_DEADLINE_S = 180.0  # the dag-processor's first parse of the copied example


def _write_data(data_dir: Path, rows: int) -> str:
    sys.path.insert(0, str(EXAMPLE_DAGS))
    try:
        from diabetes_model import write_data  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(EXAMPLE_DAGS))
    write_data(data_dir, rows)
    return compute_manifest(data_dir).dataset_hash


@pytest.fixture(scope="module")
def custom_dag(airflow_server: AirflowServer) -> AirflowServer:
    """The example DAG, registered by the dag-processor and unpaused as a user would."""
    with airflow_server.client() as client:
        wait_for(
            lambda: client.get(f"/api/v2/dags/{CUSTOM_DAG}").status_code == 200,
            REGISTER_DEADLINE_S,
            f"DAG {CUSTOM_DAG} registered",
            poll=1.0,
        )
        resp = client.patch(f"/api/v2/dags/{CUSTOM_DAG}", json={"is_paused": False})
        assert 200 == resp.status_code, resp.text
    return airflow_server


def _wait_run(server: AirflowServer, run_id: str, daemon: Daemon) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def finished() -> bool:
        with server.client() as client:
            resp = client.get(f"/api/v2/dags/{CUSTOM_DAG}/dagRuns/{run_id}")
        if resp.status_code == 200:
            found.update(resp.json())
        return found.get("state") in ("success", "failed")

    wait_for(
        finished,
        RUN_DEADLINE_S,
        f"{CUSTOM_DAG} run {run_id}",
        poll=1.0,
        diagnose=lambda: f"last seen {found}\n{daemon.diagnose()}",
    )
    return found


@pytest.mark.timeout(1200)
def test_custom_dag_triggered_by_the_watcher_and_rolled_back(
    tmp_path: Path, custom_dag: AirflowServer, mlflow_server: str
) -> None:
    """Data → the watcher triggers ``diabetes_regression`` (run ``data__<hash>``, the
    watcher's [pipeline] settings in its conf) → v1 Production with its lineage; new
    data → v2 Production recording v1 as previous; `watcher rollback` → v1 again,
    v2 quarantined."""
    (tmp_path / "data").mkdir()
    daemon = Daemon(tmp_path, password=custom_dag.password)
    model = f"e2e-diabetes-{uuid.uuid4().hex[:8]}"
    write_toml(
        daemon.config,
        {
            "watch": {"data_dir": tmp_path / "data", "quiet_period": "0.5s", "max_wait": "5s"},
            "state": {"dir": tmp_path / "state"},
            "mlflow": {"tracking_uri": mlflow_server, "request_timeout": "60s"},
            "trigger": {
                "backend": "airflow",
                "dag_id": CUSTOM_DAG,
                "retry_initial": "1s",
                "retry_max": "5s",
            },
            "trigger.airflow": {"url": custom_dag.base_url, "username": custom_dag.username},
            "pipeline": {
                "model_name": model,
                "metric": "rmse",
                "threshold": 100.0,
                "promote": "always",  # deterministic: v2 replaces v1 whatever its rmse
            },
            "pipeline.params": {"alpha": 0.5},
            "monitor": {"models": [model], "poll_interval": "1s"},
            "alerts": {"log": False},
            "http": {"listen": f"127.0.0.1:{daemon.http_port}"},
            "log": {"format": "json", "level": "info"},
        },
    )
    client = mlflow_client(mlflow_server)
    try:
        daemon.start()
        h1 = _write_data(tmp_path / "data", 300)
        run1 = _wait_run(custom_dag, f"data__{h1}", daemon)
        assert "success" == run1["state"], run1
        assert {"model_name": model, "metric": "rmse", "data_hash": h1}.items() <= run1[
            "conf"
        ].items()
        v1 = client.get_model_version(model, "1")
        mlrun = client.get_run(str(v1.run_id))
        assert (f"data__{h1}", h1) == (mlrun.data.tags["dag_run_id"], mlrun.data.tags["data_hash"])
        assert "0.5" == mlrun.data.params["alpha"]  # pipeline.params reached the team's code
        assert {"rmse", "mae", "r2"} <= set(mlrun.data.metrics) and h1 == v1.tags["data_hash"]

        h2 = _write_data(tmp_path / "data", 400)
        run2 = _wait_run(custom_dag, f"data__{h2}", daemon)
        assert "success" == run2["state"], run2
        prod = client.get_model_version_by_alias(model, "production")
        assert ("2", "1") == (str(prod.version), prod.tags["watcher.previous_production"])

        done = daemon.cli("rollback", "--model", model, "--yes", "--reason", "e2e custom DAG")
        assert 0 == done.returncode, done.stdout + done.stderr
        assert "1" == str(client.get_model_version_by_alias(model, "production").version)
        assert "true" == client.get_model_version(model, "2").tags["watcher.quarantined"]
        assert 0 == daemon.stop()
    finally:
        daemon.close()
