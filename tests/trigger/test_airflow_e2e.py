"""The data watcher against a real Airflow 3 (the stand-in DAG): one DAG run per dataset hash."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.lineage import compute_manifest
from tests.data.conftest import DataSide, drive, make_config, settle
from tests.services.airflow_server import STAND_IN_DAG_ID, AirflowServer
from watcher.runtime.state import StateStore

IRIS = Path(__file__).resolve().parents[2] / "examples" / "data" / "iris.csv"
RUN_TIMEOUT = 150.0


def _runs(server: AirflowServer) -> dict[str, str]:
    """dag_run_id → state of every data-triggered run."""
    with server.client() as client:
        resp = client.get(f"/api/v2/dags/{STAND_IN_DAG_ID}/dagRuns", params={"limit": 100})
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
    return {r["dag_run_id"]: r["state"] for r in body["dag_runs"] if r["dag_run_id"]}


def _finished(dw: DataSide, run_id: str) -> bool:
    row = dw.outbox.get(run_id)
    return row is not None and row.finished_at is not None


@pytest.mark.service
@pytest.mark.slow
@pytest.mark.timeout(600)  # three real DAG runs plus an api-server restart on a busy 2-core box
def test_airflow_exactly_once_per_hash(
    tmp_path: Path, state: StateStore, airflow_server: AirflowServer
) -> None:
    """iris.csv → one run named from the hash reaches success; same bytes → none; one row
    changed → one more; a change made while the api-server is down is delivered once."""
    data = tmp_path / "data"
    data.mkdir()
    config = make_config(
        tmp_path,
        trigger__backend="airflow",
        trigger__dag_id=STAND_IN_DAG_ID,
        trigger__airflow__url=airflow_server.base_url,
        trigger__airflow__username=airflow_server.username,
        trigger__airflow__password=airflow_server.password,
        trigger__airflow__timeout="5",
    )
    dw = DataSide(config, state, follow_interval=1.0)
    dw.start()
    try:
        shutil.copy(IRIS, data / "iris.csv")
        h1 = compute_manifest(data).dataset_hash
        drive(dw, lambda: _finished(dw, f"data__{h1}"), timeout=RUN_TIMEOUT)
        assert "success" == _runs(airflow_server)[f"data__{h1}"]
        row = dw.outbox.get(f"data__{h1}")
        assert row is not None and "success" == row.run_state

        before = _runs(airflow_server)
        (data / "iris.csv").write_bytes(IRIS.read_bytes())  # identical bytes
        settle(dw)
        assert before == _runs(airflow_server)

        lines = IRIS.read_text().splitlines(keepends=True)
        lines[1] = lines[1].replace("5.1", "5.2", 1)
        (data / "iris.csv").write_text("".join(lines))
        h2 = compute_manifest(data).dataset_hash
        assert h2 != h1
        drive(dw, lambda: _finished(dw, f"data__{h2}"), timeout=RUN_TIMEOUT)
        after = _runs(airflow_server)
        assert set(after) - set(before) == {f"data__{h2}"}
        assert "success" == after[f"data__{h2}"]

        airflow_server.stop_api_server()
        try:
            (data / "more.csv").write_text("sepal_length,target\n1.0,0\n")
            h3 = compute_manifest(data).dataset_hash
            drive(dw, lambda: (r := dw.outbox.get(f"data__{h3}")) is not None and r.attempts >= 1)
            row = dw.outbox.get(f"data__{h3}")
            assert row is not None and "pending" == row.status and row.last_error
        finally:
            airflow_server.start_api_server()
        drive(dw, lambda: _finished(dw, f"data__{h3}"), timeout=RUN_TIMEOUT)
        final = _runs(airflow_server)
        assert set(final) - set(after) == {f"data__{h3}"}
        assert "success" == final[f"data__{h3}"]
        kinds = [e.kind for e in state.events()]
        assert 3 == kinds.count("trigger.delivered") == kinds.count("run.succeeded")
        assert "trigger.retrying" in kinds
    finally:
        dw.stop()
