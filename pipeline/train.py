"""Train the RandomForest on a validated split and log everything to MLflow."""

from __future__ import annotations

import importlib.metadata
import json
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipeline import tracking
from pipeline.data import DEFAULT_SEED, DEFAULT_TEST_SIZE, Dataset, Split, split_dataset
from pipeline.errors import BadInputError
from pipeline.profile import log_drift, log_profile, profile_from_dataset

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_EXPERIMENT = "train_pipeline"
MODEL_ARTIFACT = "model"
MANIFEST_ARTIFACT = "data/manifest.sha256"
MANIFEST_JSON_ARTIFACT = "data/manifest.json"
# skops (MLflow 3's default sklearn format) refuses tree internals unless trusted.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
# Pinned requirements: letting MLflow infer them costs seconds per model.
_REQUIREMENT_DISTS = ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")


@dataclass(frozen=True, slots=True)
class TrainParams:
    n_estimators: int = 100
    max_depth: int | None = None
    random_state: int = DEFAULT_SEED
    test_size: float = DEFAULT_TEST_SIZE

    def __post_init__(self) -> None:
        if self.n_estimators < 1:
            raise BadInputError(f"n_estimators must be >= 1, got {self.n_estimators}")
        if self.max_depth is not None and self.max_depth < 1:
            raise BadInputError(f"max_depth must be >= 1 or None, got {self.max_depth}")
        if not 0.0 < self.test_size < 1.0:
            raise BadInputError(f"test_size must be in (0, 1), got {self.test_size}")


@dataclass(frozen=True, slots=True)
class TrainResult:
    run_id: str
    experiment_id: str
    model_uri: str
    model_id: str | None
    accuracy: float
    f1_score: float
    data_hash: str


def evaluate(model: Any, x: pd.DataFrame, y: pd.Series[Any]) -> tuple[float, float]:
    """(accuracy, macro F1) of ``model`` on ``x``/``y``."""
    from sklearn.metrics import accuracy_score, f1_score

    predicted = model.predict(x)
    return float(accuracy_score(y, predicted)), float(f1_score(y, predicted, average="macro"))


def pip_requirements() -> list[str]:
    reqs = []
    for dist in _REQUIREMENT_DISTS:
        try:
            reqs.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            reqs.append(dist)
    return reqs


def manifest_json(dataset: Dataset) -> str:
    files = [{"path": e.path, "sha256": e.sha256, "size": e.size} for e in dataset.manifest.entries]
    return json.dumps({"data_hash": dataset.data_hash, "files": files}, indent=2) + "\n"


def train(
    dataset: Dataset,
    params: TrainParams | None = None,
    *,
    split: Split | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    dag_run_id: str | None = None,
    tracking_uri: str | None = None,
    data_dir: str | None = None,
    trigger: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Fit, evaluate on the test split and log params, metrics, tags, manifest and model.

    ``settings``: the run's other pipeline settings (model name, registry mode, promote
    rule, threshold), logged as params too, so the run records everything it used.
    """
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier

    params = params or TrainParams()
    split = split or split_dataset(dataset, test_size=params.test_size, seed=params.random_state)
    tracking.client(tracking_uri)
    model = RandomForestClassifier(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        random_state=params.random_state,
    )
    model.fit(split.x_train, split.y_train)
    accuracy, f1 = evaluate(model, split.x_test, split.y_test)

    tags = {"data_hash": dataset.data_hash, "target": dataset.target_name}
    if dag_run_id:
        tags["dag_run_id"] = dag_run_id
    commit = tracking.git_commit()
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    if data_dir:
        tags["data_dir"] = data_dir
    trigger = dict(trigger or {})
    drift = trigger.pop("drift", None)
    tags.update({f"watcher.trigger.{k}": str(v) for k, v in trigger.items()})

    exp = mlflow.set_experiment(experiment)
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        mlflow.set_tags(tags)
        mlflow.log_params(
            {
                **{k: ("None" if v is None else v) for k, v in asdict(params).items()},
                **dict(settings or {}),
                "train_rows": len(split.y_train),
                "test_rows": len(split.y_test),
            }
        )
        mlflow.log_metrics({"accuracy": accuracy, "f1_score": f1})
        mlflow.log_text(
            dataset.manifest.text().decode("utf-8", "surrogateescape"), MANIFEST_ARTIFACT
        )
        mlflow.log_text(manifest_json(dataset), MANIFEST_JSON_ARTIFACT)
        log_profile(profile_from_dataset(dataset))  # reference for drift (issue 8)
        if isinstance(drift, Mapping):
            log_drift(drift)  # the watcher's drift scores for the data it triggered on
        signature = infer_signature(split.x_train, model.predict(split.x_train.head(5)))
        with warnings.catch_warnings():
            # MLflow 3.17 compares DataFrame columns to a range() when writing the
            # input example; pandas 3 deprecates that. Harmless, and not ours to fix.
            warnings.filterwarnings("ignore", message="Operation with range is deprecated")
            info = mlflow.sklearn.log_model(
                model,
                name=MODEL_ARTIFACT,
                signature=signature,
                input_example=split.x_train.head(5),
                pip_requirements=pip_requirements(),
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
            )
    return TrainResult(
        run_id=run.info.run_id,
        experiment_id=exp.experiment_id,
        model_uri=info.model_uri,
        model_id=getattr(info, "model_id", None),
        accuracy=accuracy,
        f1_score=f1,
        data_hash=dataset.data_hash,
    )
