"""Training, registration and promotion against a real in-process MLflow (SQLite).

Every registry test runs in both registry modes (alias and stage).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline import steps, tracking
from pipeline.config import RunConfig
from pipeline.data import load_dataset
from pipeline.metrics import METRICS
from pipeline.register import TAG_DECISION, TAG_PREVIOUS, TAG_REPLACED_BY, decide

MODES = ["alias", "stage"]
WEAK = {"n_estimators": 1, "max_depth": 1}  # a stump: ~0.6 accuracy on iris


def run(uri: str, data_dir: Path, name: str, mode: str, **overrides: Any) -> dict[str, Any]:
    cfg = RunConfig(
        data_dir=str(data_dir), model_name=name, registry_mode=mode, tracking_uri=uri, **overrides
    )
    state = steps.preprocess(cfg)
    state = steps.train(state)
    state = steps.register(state)
    return steps.validate(state, fail_below=False)


def production(uri: str, name: str, mode: str) -> str | None:
    from pipeline.register import current_production

    return current_production(tracking.client(uri), name, mode)  # type: ignore[arg-type]


def version_tags(uri: str, name: str, version: str) -> dict[str, str]:
    return dict(tracking.client(uri).get_model_version(name, version).tags)


class TestDecide:
    @pytest.mark.parametrize(
        ("rule", "cand", "prod", "has_prod", "expected"),
        [
            ("never", 0.99, None, False, False),
            ("always", 0.10, 0.99, True, True),
            ("if_better", 0.89, None, False, False),  # below gate
            ("if_better", 0.90, None, False, True),  # at gate, no production
            ("if_better", 0.95, 0.96, True, False),  # worse than production
            ("if_better", 0.96, 0.96, True, True),  # not worse
            ("if_better", 0.97, None, True, False),  # production could not be scored
        ],
    )
    def test_rule_table(
        self, rule: Any, cand: float, prod: float | None, has_prod: bool, expected: bool
    ) -> None:
        """The promotion rule as a table: gate first, then not-worse-than-Production."""
        decision = decide(
            rule,
            candidate=cand,
            threshold=0.9,
            production=prod,
            has_production=has_prod,
            production_error="boom" if has_prod and prod is None else None,
        )
        assert expected == decision.promote
        assert decision.reason

    @pytest.mark.parametrize(
        ("cand", "prod", "expected", "reason"),
        [
            (40.5, None, False, "rmse 40.5000 above threshold 40.0000"),
            (40.0, None, True, "no Production version"),  # at the gate: passes
            (35.0, 30.0, False, "worse than Production's 30.0000"),  # higher rmse is worse
            (30.0, 35.0, True, "not worse than Production's 35.0000"),
        ],
    )
    def test_lower_is_better_for_rmse(
        self, cand: float, prod: float | None, expected: bool, reason: str
    ) -> None:
        """Issue 19: an error metric gates and compares downwards."""
        decision = decide(
            "if_better",
            candidate=cand,
            threshold=40.0,
            production=prod,
            has_production=prod is not None,
            metric=METRICS["rmse"],
        )
        assert (expected, True) == (decision.promote, reason in decision.reason)


@pytest.mark.parametrize("mode", MODES)
class TestRegistry:
    def test_first_run_logs_everything_and_promotes(
        self, mode: str, registry_uri: str, iris_dir: Path, model_name: str
    ) -> None:
        """A first run logs params/metrics/tags/manifest, registers v1 and makes it Production."""
        import mlflow.sklearn

        from pipeline import lineage

        out = run(registry_uri, iris_dir, model_name, mode, dag_run_id="manual__1")
        data_hash = lineage.dataset_hash(iris_dir)
        assert ("1", True, "1", None) == (
            out["version"],
            out["promoted"],
            out["production"],
            out["previous_production"],
        )
        client = tracking.client(registry_uri)
        r = client.get_run(out["run_id"])
        assert {"n_estimators": "100", "max_depth": "None"}.items() <= r.data.params.items()
        assert 0.9 <= r.data.metrics["accuracy"] <= 1.0
        assert 0.9 <= r.data.metrics["f1_score"] <= 1.0
        assert data_hash == r.data.tags["data_hash"]
        assert "manual__1" == r.data.tags["dag_run_id"]
        manifest = json.loads(
            Path(
                mlflow.artifacts.download_artifacts(
                    run_id=out["run_id"], artifact_path="data/manifest.json"
                )
            ).read_text()
        )
        assert data_hash == manifest["data_hash"]
        assert [{"path": "iris.csv", "size": (iris_dir / "iris.csv").stat().st_size}] == [
            {"path": f["path"], "size": f["size"]} for f in manifest["files"]
        ]
        tags = version_tags(registry_uri, model_name, "1")
        assert data_hash == tags["data_hash"]
        assert out["run_id"] == tags["source_run_id"]
        assert out["accuracy"] == float(tags["accuracy"])
        uri = (
            f"models:/{model_name}@production"
            if mode == "alias"
            else f"models:/{model_name}/Production"
        )
        model = mlflow.sklearn.load_model(uri)
        assert 3 == len(set(model.predict(load_dataset(iris_dir).features)))

    def test_rerun_same_data_new_version_and_lineage(
        self, mode: str, registry_uri: str, iris_dir: Path, model_name: str
    ) -> None:
        """A rerun makes a new run and version; promotion records lineage; v1 keeps its tags."""
        first = run(registry_uri, iris_dir, model_name, mode)
        second = run(registry_uri, iris_dir, model_name, mode)
        assert first["run_id"] != second["run_id"]
        assert ("2", True, "1") == (
            second["version"],
            second["promoted"],
            second["previous_production"],
        )
        assert "2" == production(registry_uri, model_name, mode)
        assert "1" == version_tags(registry_uri, model_name, "2")[TAG_PREVIOUS]
        old = tracking.client(registry_uri).get_model_version(model_name, "1")
        assert "2" == old.tags[TAG_REPLACED_BY]
        assert first["data_hash"] == old.tags["data_hash"]
        if mode == "stage":
            assert "Archived" == old.current_stage
        else:
            aliases = tracking.client(registry_uri).get_registered_model(model_name).aliases
            assert "2" == str(aliases["production"])

    def test_worse_model_is_held(
        self, mode: str, registry_uri: str, iris_dir: Path, model_name: str
    ) -> None:
        """if_better keeps Production when the candidate is worse; the candidate is still staged."""
        run(registry_uri, iris_dir, model_name, mode)
        weak = run(registry_uri, iris_dir, model_name, mode, threshold=0.0, **WEAK)
        assert ("2", False, "1") == (weak["version"], weak["promoted"], weak["production"])
        assert weak["production_score"] > weak["accuracy"]
        assert "1" == production(registry_uri, model_name, mode)
        assert version_tags(registry_uri, model_name, "2")[TAG_DECISION].startswith("held: ")
        client = tracking.client(registry_uri)
        if mode == "stage":
            assert "Staging" == client.get_model_version(model_name, "2").current_stage
        else:
            assert "2" == str(client.get_model_version_by_alias(model_name, "staging").version)

    def test_below_gate_not_promoted_even_without_production(
        self, mode: str, registry_uri: str, iris_dir: Path, model_name: str
    ) -> None:
        """if_better never promotes a model below the threshold; `never` never promotes."""
        weak = run(registry_uri, iris_dir, model_name, mode, **WEAK)
        assert (False, None, False) == (weak["promoted"], weak["production"], weak["gate_passed"])
        never = run(registry_uri, iris_dir, model_name, mode, promote="never")
        assert (False, None) == (never["promoted"], production(registry_uri, model_name, mode))

    def test_always_promotes_worse(
        self, mode: str, registry_uri: str, iris_dir: Path, model_name: str
    ) -> None:
        """promote=always replaces Production even with a worse model, recording lineage."""
        run(registry_uri, iris_dir, model_name, mode)
        weak = run(registry_uri, iris_dir, model_name, mode, promote="always", **WEAK)
        assert (True, "2") == (weak["promoted"], production(registry_uri, model_name, mode))
        assert "1" == version_tags(registry_uri, model_name, "2")[TAG_PREVIOUS]

    def test_concurrent_production_change_is_not_overwritten(
        self,
        mode: str,
        registry_uri: str,
        iris_dir: Path,
        model_name: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """If Production moves while the candidate is being scored, the candidate is held."""
        from pipeline import register

        run(registry_uri, iris_dir, model_name, mode)  # v1 Production
        run(registry_uri, iris_dir, model_name, mode, promote="never")  # v2 staged
        real_score = register.score_version

        def score_then_rollback(*args: Any) -> float:
            # Someone (an operator, the watcher) moves Production to v2 meanwhile.
            client = tracking.client(registry_uri)
            if mode == "alias":
                client.set_registered_model_alias(model_name, "production", "2")
            else:
                with register._stage_api():
                    client.transition_model_version_stage(model_name, "2", "Production", True)
            return real_score(*args)

        monkeypatch.setattr(register, "score_version", score_then_rollback)
        third = run(registry_uri, iris_dir, model_name, mode)
        assert (False, "2") == (third["promoted"], production(registry_uri, model_name, mode))
        assert "changed from 1 to 2" in third["reason"]
