"""A paused DAG in a real Airflow: the daemon keeps what it saw, `watcher status` shows it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.data.conftest import DataSide, make_config
from tests.services.airflow_server import AirflowServer
from watcher.backends.airflow import AirflowTrigger
from watcher.cli.main import main
from watcher.runtime.state import open_state
from watcher.testing import FakeClock
from watcher.trigger.delivery import PAUSED_RECHECK

pytestmark = pytest.mark.service
DAG_URL = "/api/v2/dags/train_pipeline"


@pytest.fixture
def trigger(airflow_server: AirflowServer) -> Iterator[AirflowTrigger]:
    with AirflowTrigger(
        airflow_server.base_url,
        username=airflow_server.username,
        password=airflow_server.password,
        timeout=30.0,  # other sessions share the cores; SQLite waits on locks
    ) as trig:
        yield trig


def _status(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()  # what the component logged before
    assert 0 == main(["status", *args])
    return capsys.readouterr().out


def test_status_shows_a_paused_dag_and_how_to_unpause(
    airflow_server: AirflowServer,
    trigger: AirflowTrigger,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The daemon sees the DAG paused (logs dag_paused): status shows it with the unpause
    command; once unpaused, the next check says so in status and history (#13)."""
    for name in [n for n in os.environ if n.startswith("WATCHER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WATCHER_STATE__DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WATCHER_WATCH__DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    state = open_state(tmp_path / "state")
    clock = FakeClock()
    dw = DataSide(make_config(tmp_path), state, trigger=trigger, clock=clock)
    with airflow_server.client() as client:
        client.patch(DAG_URL, json={"is_paused": True}).raise_for_status()
        try:
            dw.start()
            doc: dict[str, Any] = json.loads(_status(capsys, "--json"))
            assert doc["dag"]["dag_id"] == "train_pipeline"
            assert doc["dag"]["paused"] is True
            text = _status(capsys)
            assert "train_pipeline is paused" in text
            assert "airflow dags unpause train_pipeline" in text
            assert f'{airflow_server.base_url}{DAG_URL} {{"is_paused": false}}' in text
        finally:
            client.patch(DAG_URL, json={"is_paused": False}).raise_for_status()
    try:
        clock.advance(PAUSED_RECHECK + 1)
        dw.tick()
        assert json.loads(_status(capsys, "--json"))["dag"]["paused"] is False
        assert "is paused" not in _status(capsys)
        kinds = [e.kind for e in state.events() if e.kind.startswith("trigger.dag")]
        assert ["trigger.dag_paused", "trigger.dag_unpaused"] == kinds
    finally:
        dw.stop()
        state.close()
