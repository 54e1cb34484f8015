"""Issue 19 §3: the helpers a team's own DAG uses (pipeline/api.py), through the example's
own training function (examples/custom_dag/diabetes_model.py) on a real MLflow store;
the Airflow run of the same DAG is tests/e2e/test_custom_dag.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from pipeline import api, lineage, tracking
from pipeline.errors import DataHashMismatchError
from tests.services.airflow_server import EXAMPLE_DAGS


@pytest.fixture(scope="module")
def team_model() -> Iterator[ModuleType]:
    """The example's training module, imported as Airflow does (its folder on sys.path)."""
    sys.path.insert(0, str(EXAMPLE_DAGS))
    try:
        import diabetes_model  # type: ignore[import-not-found]

        yield diabetes_model
    finally:
        sys.path.remove(str(EXAMPLE_DAGS))


def test_read_conf_and_verify_data(tmp_path: Path, team_model: ModuleType) -> None:
    """The watcher's conf comes back typed; data that changed since the trigger is refused,
    naming both hashes; a conf key the pipeline does not know is refused by name."""
    data = team_model.write_data(tmp_path / "data", 50)
    wanted = lineage.dataset_hash(data.parent)
    conf = {"data_dir": str(data.parent), "data_hash": wanted, "reason": "data_changed"}
    cfg = api.read_conf(conf, dag_run_id=f"data__{wanted}")
    assert (f"data__{wanted}", {"reason": "data_changed"}) == (cfg.dag_run_id, cfg.trigger)
    assert wanted == api.verify_data(cfg)
    team_model.write_data(tmp_path / "data", 60)
    with pytest.raises(DataHashMismatchError) as caught:
        api.verify_data(cfg)
    assert wanted in str(caught.value) and lineage.dataset_hash(data.parent) in str(caught.value)
    with pytest.raises(api.BadInputError, match="unknown run conf key"):
        api.read_conf({**conf, "tresholds": 1})


def test_team_training_function_registers_with_lineage(
    registry_uri: str, tmp_path: Path, team_model: ModuleType
) -> None:
    """The example's run(): lineage tags on its run, v1 Production; a second run under
    `if_better` that is worse on the same split is held; one under `always` becomes
    Production recording v1 as its previous (what rollback follows)."""
    name = "team-diabetes-api"
    data_dir = tmp_path / "data"

    def run(rows: int, **settings: object) -> dict[str, object]:
        team_model.write_data(data_dir, rows)
        data_hash = lineage.dataset_hash(data_dir)
        conf = {
            "data_dir": str(data_dir),
            "data_hash": data_hash,
            "model_name": name,
            "metric": "rmse",
            "threshold": 100.0,
            "tracking_uri": registry_uri,
            **settings,
        }
        summary: dict[str, object] = team_model.run(conf, f"data__{data_hash}")
        return summary

    first = run(300, params={"alpha": 0.5})
    assert ("1", True) == (first["version"], first["promoted"])
    client = tracking.client(registry_uri)
    tags = client.get_run(str(first["run_id"])).data.tags
    assert tags["dag_run_id"] == f"data__{tags['data_hash']}"
    # A heavily regularised model: within the gate, worse than Production on the same split.
    held = run(300, params={"alpha": 1e6})
    assert (False, "worse than Production's") == (
        held["promoted"],
        "worse than Production's" if "worse than Production's" in str(held["reason"]) else "",
    )
    forced = run(300, params={"alpha": 1e6}, promote="always")
    version = client.get_model_version_by_alias(name, "production")
    assert (forced["version"], "1") == (
        str(version.version),
        version.tags["watcher.previous_production"],
    )
