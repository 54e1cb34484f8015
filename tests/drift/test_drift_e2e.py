"""End to end on iris: train and register with MLflow (in-process SQLite), then `watcher drift`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pipeline.profile import PROFILE_ARTIFACT, load_profile
from watcher.cli.main import main

MODEL = "iris-drift"
LEGACY = "iris-legacy"  # Production version trained before profiles existed
EMPTY = "iris-empty"  # registered, never promoted
SHIFTED = ("sepal length (cm)", "petal length (cm)", "petal width (cm)")


@dataclass(frozen=True)
class World:
    root: Path
    uri: str
    config: Path
    reference: Path
    shifted: Path
    resample: Path


def _write(frame: pd.DataFrame, directory: Path) -> Path:
    directory.mkdir(parents=True)
    frame.to_csv(directory / "iris.csv", index=False)
    return directory


def _train_and_register(name: str, data_dir: Path) -> str:
    """Fit a small forest on the directory, log its reference profile, register it."""
    import mlflow
    import mlflow.sklearn
    from sklearn.ensemble import RandomForestClassifier

    from pipeline.data import load_dataset
    from pipeline.profile import log_profile, profile_from_dataset
    from pipeline.train import SKOPS_TRUSTED_TYPES, pip_requirements

    dataset = load_dataset(data_dir)
    model = RandomForestClassifier(n_estimators=5, random_state=0)
    model.fit(dataset.features, dataset.target)
    mlflow.set_experiment("drift-e2e")
    with mlflow.start_run():
        mlflow.set_tag("data_hash", dataset.data_hash)
        log_profile(profile_from_dataset(dataset))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            pip_requirements=pip_requirements(),
            skops_trusted_types=SKOPS_TRUSTED_TYPES,
            registered_model_name=name,
        )
    return str(info.registered_model_version)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Iris CSVs (reference, +2 sigma shift on three columns, plain resample) and two models."""
    import mlflow
    from sklearn.datasets import load_iris

    root = tmp_path_factory.mktemp("drift-e2e")
    iris: pd.DataFrame = load_iris(as_frame=True).frame
    reference = _write(iris, root / "reference")
    shifted_frame = iris.sample(frac=1.0, replace=True, random_state=11).reset_index(drop=True)
    for col in SHIFTED:
        shifted_frame[col] = shifted_frame[col] + 2 * iris[col].std()
    shifted = _write(shifted_frame, root / "shifted")
    resample = _write(iris.sample(frac=1.0, replace=True, random_state=7), root / "resample")

    uri = f"sqlite:///{root / 'mlflow.db'}"
    config = root / "watcher.toml"
    config.write_text(
        f'[mlflow]\ntracking_uri = "{uri}"\n[pipeline]\nmodel_name = "{MODEL}"\n'
        f'[state]\ndir = "{root / "state"}"\n',
        encoding="utf-8",
    )
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # A sqlite store puts artifacts in ./mlruns: keep them out of the repository.
    cwd = pytest.MonkeyPatch()
    cwd.chdir(root)
    try:
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        v1 = _train_and_register(MODEL, reference)
        client.set_registered_model_alias(MODEL, "production", v1)
        # The legacy version needs a run without a profile, not a second model artifact.
        with mlflow.start_run() as run:
            mlflow.set_tag("note", "trained before reference profiles")
        client.create_registered_model(LEGACY)
        legacy = client.create_model_version(
            LEGACY, f"runs:/{run.info.run_id}/model", run.info.run_id
        ).version
        client.set_registered_model_alias(LEGACY, "production", str(legacy))
        client.create_registered_model(EMPTY)
        yield World(root, uri, config, reference, shifted, resample)
    finally:
        cwd.undo()
        mlflow.set_tracking_uri(previous)
        mlflow.set_registry_uri(previous)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("WATCHER_"):
            monkeypatch.delenv(name)


def _run(world: World, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--config", str(world.config), "drift", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _report(world: World, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code, out, err = _run(world, capsys, *args, "--json")
    assert (0, "") == (code, err)
    data: dict[str, Any] = json.loads(out)
    return data


@pytest.mark.slow
class TestAgainstProduction:
    def test_shifted_dataset_names_the_shifted_columns(
        self, world: World, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """+2 sigma on three iris columns: exactly those drift, and the dataset drifts (3 of 5)."""
        report = _report(world, capsys, str(world.shifted))
        assert sorted(SHIFTED) == sorted(report["drifted_columns"])
        assert (True, 0.6, f"{MODEL} v1") == (
            report["dataset_drift"],
            report["share"],
            report["reference"],
        )
        assert {"ks"} == {c["test"] for c in report["columns"] if c["kind"] == "num"}

    def test_text_report(self, world: World, capsys: pytest.CaptureFixture[str]) -> None:
        """The human report has one row per column and a verdict naming the drifted columns."""
        code, out, _ = _run(world, capsys, str(world.shifted))
        assert 0 == code
        lines = out.strip().splitlines()
        assert f"vs {MODEL} v1 (sample of 150 rows)" in lines[0]
        assert lines[-1].startswith("dataset: DRIFT: 3 of 5 columns drifted (60%")
        assert all(col in lines[-1] for col in SHIFTED)
        row = next(line for line in lines if line.startswith("sepal width (cm)"))
        assert row.split()[-1] == "no"

    def test_unshifted_resample_reports_no_drift(
        self, world: World, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A bootstrap resample of the training data: no column drifts."""
        report = _report(world, capsys, str(world.resample))
        assert ([], False, 0.0) == (
            report["drifted_columns"],
            report["dataset_drift"],
            report["share"],
        )

    def test_psi_method_from_config(
        self, world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """drift.method = psi (here via env) switches every column to PSI, same verdict."""
        monkeypatch.setenv("WATCHER_DRIFT__METHOD", "psi")
        report = _report(world, capsys, str(world.shifted))
        assert {"psi"} == {c["test"] for c in report["columns"]}
        assert sorted(SHIFTED) == sorted(report["drifted_columns"])

    def test_daemon_api_and_conf_fields(self, world: World) -> None:
        """The daemon's calls: production_reference → drift_for_dataset → conf_fields."""

        from watcher.config import load_config
        from watcher.drift.check import drift_for_dataset, production_reference
        from watcher.drift.stats import conf_fields

        cfg = load_config(world.config, env={})
        from watcher.backends.mlflow_models import MlflowModels
        from watcher.backends.mlflow_registry import MlflowRegistry

        registry = MlflowRegistry(world.uri, "alias")
        ref = production_reference(registry, MlflowModels(registry), MODEL)
        assert ("1", None) == (ref.version, ref.note)
        assert ref.profile is not None
        report = drift_for_dataset(world.shifted, ref.profile, cfg, reference_label=ref.label)
        conf = json.loads(json.dumps(conf_fields(report), allow_nan=False))["drift"]
        assert (True, sorted(SHIFTED)) == (conf["dataset_drift"], sorted(conf["drifted_columns"]))
        assert conf["scores"]["petal length (cm)"] < 1e-6 < conf["scores"]["sepal width (cm)"]
        assert len(conf["data_hash"]) == 64


@pytest.mark.slow
class TestNoReference:
    def test_version_without_profile_is_a_note(
        self, world: World, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Production trained before profiles: a clear 'no reference' note, exit 0."""
        code, out, err = _run(world, capsys, str(world.shifted), "--model", LEGACY)
        assert (0, "") == (code, err)
        assert out.startswith(f"no reference: {LEGACY} v1 has no reference_profile.json")
        data = _report(world, capsys, str(world.shifted), "--model", LEGACY)
        assert (None, "1") == (data["reference"], data["version"])
        assert data["note"].startswith("no reference")

    def test_model_without_production_is_a_note(
        self, world: World, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No Production version: nothing to compare against, said plainly."""
        code, out, _ = _run(world, capsys, str(world.shifted), "--model", EMPTY)
        assert (0, f"no reference: model '{EMPTY}' has no Production version\n") == (code, out)

    def test_load_profile_returns_none_for_legacy_version(self, world: World) -> None:
        """load_profile: None (not an error) when the run has no profile artifact."""
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=world.uri, registry_uri=world.uri)
        assert load_profile(client, LEGACY, 1) is None
        profile = load_profile(client, MODEL, "1")
        assert profile is not None
        assert (150, "target") == (profile.sample_rows, profile.target)
        run_id = client.get_model_version(MODEL, "1").run_id
        assert run_id is not None
        names = {a.path for a in client.list_artifacts(run_id)}
        assert PROFILE_ARTIFACT in names


@pytest.mark.slow
class TestErrors:
    def test_unknown_model_exit_2(self, world: World, capsys: pytest.CaptureFixture[str]) -> None:
        """An unknown model is bad input: exit 2, one line naming it."""
        code, _, err = _run(world, capsys, str(world.shifted), "--model", "nope")
        assert (2, "error: model 'nope' not found in the registry\n") == (code, err)

    def test_bad_data_exit_2_names_file_column_row(
        self, world: World, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Unparseable data: exit 2 and the file, column and row."""
        bad = world.root / "bad"
        bad.mkdir(exist_ok=True)
        (bad / "d.csv").write_text("a,target\n1.0,0\nzz,1\n", encoding="utf-8")
        code, _, err = _run(world, capsys, str(bad))
        assert 2 == code
        assert "file 'd.csv', column 'a', row 2" in err

    def test_missing_directory_exit_2(
        self, world: World, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A directory that does not exist: exit 2."""
        code, _, err = _run(world, capsys, str(world.root / "absent"))
        assert (2, True) == (code, err.startswith("error: ") and "not a directory" in err)

    def test_registry_down_exit_1(
        self, world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """MLflow unreachable: exit 1 with one error line, no traceback."""
        monkeypatch.setenv("WATCHER_MLFLOW__TRACKING_URI", "http://127.0.0.1:9")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        code, _, err = _run(world, capsys, str(world.shifted))
        assert 1 == code
        assert err.startswith("error: MLflow unreachable at http://127.0.0.1:9")
        assert 1 == len(err.strip().splitlines())
        assert "Traceback" not in err


class TestReferenceDirectory:
    def test_reference_dir_needs_no_mlflow(
        self, world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--reference DIR compares two directories; MLflow is never contacted."""
        monkeypatch.setenv("WATCHER_MLFLOW__TRACKING_URI", "http://127.0.0.1:9")
        shifted = _report(world, capsys, str(world.shifted), "--reference", str(world.reference))
        same = _report(world, capsys, str(world.resample), "--reference", str(world.reference))
        assert (sorted(SHIFTED), []) == (
            sorted(shifted["drifted_columns"]),
            same["drifted_columns"],
        )
        assert str(world.reference) == shifted["reference"]


@pytest.mark.slow
class TestPipelineLogsProfile:
    def test_train_logs_the_reference_profile(self, world: World) -> None:
        """pipeline.train.train logs reference_profile.json describing the data it trained on."""
        import mlflow

        from pipeline.data import load_dataset
        from pipeline.profile import load_run_profile
        from pipeline.train import TrainParams, train

        dataset = load_dataset(world.reference)
        result = train(dataset, TrainParams(n_estimators=3), tracking_uri=world.uri)
        client = mlflow.MlflowClient(tracking_uri=world.uri, registry_uri=world.uri)
        profile = load_run_profile(client, result.run_id)
        assert profile is not None
        assert (dataset.data_hash, 150, "target") == (
            profile.data_hash,
            profile.n_rows,
            profile.target,
        )
