"""Train the configured estimator on a validated split and log everything to MLflow."""

from __future__ import annotations

import importlib.metadata
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline import estimator as estimators
from pipeline import tracking
from pipeline.data import DEFAULT_SEED, DEFAULT_TEST_SIZE, Dataset, Split, split_dataset
from pipeline.errors import BadInputError
from pipeline.metrics import Task
from pipeline.profile import log_drift, log_profile, profile_from_dataset

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_EXPERIMENT = "train_pipeline"
MODEL_ARTIFACT = "model"
MANIFEST_ARTIFACT = "data/manifest.sha256"
MANIFEST_JSON_ARTIFACT = "data/manifest.json"
# skops (MLflow 3's default sklearn format) refuses tree internals unless trusted; the
# types another estimator needs are found from the fitted model itself (trusted_types).
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
# Pinned requirements: letting MLflow infer them costs seconds per model.
_REQUIREMENT_DISTS = ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")


@dataclass(frozen=True, slots=True)
class TrainParams:
    """What to fit: the estimator (default: the seed's RandomForest, configured by
    ``n_estimators`` / ``max_depth``) and its ``params``, for a resolved ``task``."""

    n_estimators: int = 100
    max_depth: int | None = None
    random_state: int = DEFAULT_SEED
    test_size: float = DEFAULT_TEST_SIZE
    estimator: str = estimators.DEFAULT_ESTIMATOR
    params: Mapping[str, Any] = field(default_factory=dict)
    task: Task = "classification"
    task_source: str = "configured"

    def constructor_args(self) -> dict[str, Any]:
        return estimators.effective_params(
            self.estimator, self.params, self.n_estimators, self.max_depth
        )

    def logged(self) -> dict[str, Any]:
        """The run's params: the seed's names for the default estimator, plus ``params``
        under their own names (``estimator.NAME`` where a pipeline name is taken)."""
        out: dict[str, Any] = {"random_state": self.random_state, "test_size": self.test_size}
        if self.estimator == estimators.DEFAULT_ESTIMATOR:
            out = {"n_estimators": self.n_estimators, "max_depth": self.max_depth, **out}
        out.update(estimator=self.estimator, task=self.task, task_source=self.task_source)
        for key, value in self.params.items():
            out[f"estimator.{key}" if key in out else key] = value
        return {k: ("None" if v is None else v) for k, v in out.items()}

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
    task: Task
    metrics: dict[str, float]  # every metric of the task (pipeline.metrics.task_metrics)
    data_hash: str


def evaluate(model: Any, x: pd.DataFrame, y: pd.Series[Any], task: Task) -> dict[str, float]:
    """The task's metrics of ``model`` on ``x``/``y`` (accuracy and macro F1; rmse, mae, r2)."""
    return estimators.score(task, y, model.predict(x))


def trusted_types(model: Any) -> list[str]:
    """The types skops must trust to load ``model`` again: a forest's trees for the
    default estimator; for another, what the fitted model holds beyond skops' defaults
    (a boosting's predictors), found by serialising it once (time grows with its size)."""
    from sklearn.ensemble import RandomForestClassifier

    if type(model) is RandomForestClassifier:
        return list(SKOPS_TRUSTED_TYPES)
    import skops.io  # type: ignore[import-untyped]

    return sorted({*SKOPS_TRUSTED_TYPES, *skops.io.get_untrusted_types(data=skops.io.dumps(model))})


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


def lineage_tags(
    data_hash: str,
    *,
    dag_run_id: str | None = None,
    data_dir: str | None = None,
    trigger: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The lineage tags of a training run (docs/contract.md): ``data_hash``, the
    ``dag_run_id`` the watcher triggered (``data__<hash>``), the code's git commit, the
    data dir, and why it triggered as ``watcher.trigger.*`` (the drift scores, a nested
    object, are logged by ``pipeline.profile.log_drift`` instead)."""
    tags = {"data_hash": data_hash}
    if dag_run_id:
        tags["dag_run_id"] = dag_run_id
    commit = tracking.git_commit()
    if commit:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    if data_dir:
        tags["data_dir"] = data_dir
    reasons = {k: v for k, v in (trigger or {}).items() if k != "drift"}
    tags.update({f"watcher.trigger.{k}": str(v) for k, v in reasons.items()})
    return tags


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
    rule, gate metric and threshold), logged as params too, so the run records
    everything it used.
    """
    params = params or TrainParams()
    split = split or split_dataset(
        dataset, test_size=params.test_size, seed=params.random_state, task=params.task
    )
    tracking.client(tracking_uri)
    model = estimators.build(
        params.estimator, params.constructor_args(), random_state=params.random_state
    )
    model.fit(split.x_train, split.y_train)
    metrics = evaluate(model, split.x_test, split.y_test, params.task)

    tags = lineage_tags(
        dataset.data_hash, dag_run_id=dag_run_id, data_dir=data_dir, trigger=trigger
    )
    tags.update(target=dataset.target_name, task=params.task)
    drift = (trigger or {}).get("drift")

    run_id, experiment_id, info = _log_run(
        dataset, model, split, params, metrics, tags, experiment, drift, settings
    )
    return TrainResult(
        run_id=run_id,
        experiment_id=experiment_id,
        model_uri=info.model_uri,
        model_id=getattr(info, "model_id", None),
        task=params.task,
        metrics=metrics,
        data_hash=dataset.data_hash,
    )


def log_model(model: Any, x_train: pd.DataFrame) -> Any:
    """Log a fitted scikit-learn-compatible model to the active run as ``model``: its
    signature, an input example and pinned pip requirements, in skops format trusting
    the types the model holds. Returns MLflow's ModelInfo."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    signature = infer_signature(x_train, model.predict(x_train.head(5)))
    with warnings.catch_warnings():
        # MLflow 3.17 compares DataFrame columns to a range() when writing the
        # input example; pandas 3 deprecates that. Harmless, and not ours to fix.
        warnings.filterwarnings("ignore", message="Operation with range is deprecated")
        return mlflow.sklearn.log_model(
            model,
            name=MODEL_ARTIFACT,
            signature=signature,
            input_example=x_train.head(5),
            pip_requirements=pip_requirements(),
            skops_trusted_types=trusted_types(model),
        )


def _log_run(
    dataset: Dataset,
    model: Any,
    split: Split,
    params: TrainParams,
    metrics: dict[str, float],
    tags: dict[str, str],
    experiment: str,
    drift: Any,
    settings: Mapping[str, Any] | None,
) -> tuple[str, str, Any]:
    """One MLflow run: tags, params, metrics, manifest, profile, drift and the model
    (with its signature, an input example and pinned pip requirements)."""
    import mlflow

    exp = mlflow.set_experiment(experiment)
    with mlflow.start_run(experiment_id=exp.experiment_id) as run:
        mlflow.set_tags(tags)
        mlflow.log_params(
            {
                **params.logged(),
                **dict(settings or {}),
                "train_rows": len(split.y_train),
                "test_rows": len(split.y_test),
            }
        )
        mlflow.log_metrics(metrics)
        mlflow.log_text(
            dataset.manifest.text().decode("utf-8", "surrogateescape"), MANIFEST_ARTIFACT
        )
        mlflow.log_text(manifest_json(dataset), MANIFEST_JSON_ARTIFACT)
        log_profile(profile_from_dataset(dataset))  # reference for drift (issue 8)
        if isinstance(drift, Mapping):
            log_drift(drift)  # the watcher's drift scores for the data it triggered on
        info = log_model(model, split.x_train)
    return run.info.run_id, exp.experiment_id, info
