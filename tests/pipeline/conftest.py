"""Fixtures for the pipeline tests: data dirs and a shared in-process MLflow registry."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DATA = REPO / "examples" / "data"


@pytest.fixture
def iris_dir(tmp_path: Path) -> Path:
    """A private copy of examples/data (tests may modify it)."""
    out = tmp_path / "data"
    shutil.copytree(EXAMPLE_DATA, out)
    return out


@pytest.fixture(scope="session")
def registry_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One in-process SQLite MLflow for the session (table creation costs seconds).

    Tests isolate themselves by model name (``model_name`` fixture). The experiment
    is created up front so artifacts land in the tmp dir, not ``./mlruns``.
    """
    import mlflow

    root = tmp_path_factory.mktemp("mlflow-sqlite")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_experiment("train_pipeline", artifact_location=(root / "artifacts").as_uri())
    return uri


_names = itertools.count(1)


@pytest.fixture
def model_name(request: pytest.FixtureRequest) -> str:
    """A registered-model name no other test uses."""
    return f"iris-{next(_names)}-{request.node.name[:40]}".replace("[", "-").replace("]", "")


@pytest.fixture
def make_variant(tmp_path: Path) -> Callable[[str], Path]:
    """Write a corrupted data dir (see pipeline.sample_data.CORRUPTIONS) and return it."""
    from pipeline import sample_data

    def make(kind: str) -> Path:
        return sample_data.corrupt(kind, tmp_path / f"bad-{kind}")

    return make
