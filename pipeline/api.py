"""The public helpers for a team's own DAG: keep the daemon's contract (docs/contract.md)
while training your own way.

    from pipeline import api

    cfg = api.read_conf(dag_run.conf, dag_run_id=dag_run.run_id)  # typed settings
    data_hash = api.verify_data(cfg)            # the bytes the watcher triggered for
    with mlflow.start_run():
        api.tag_run(cfg, data_hash)             # data_hash, dag_run_id, watcher.trigger.*
        ...fit; mlflow.log_metrics(api.score(task, y_test, model.predict(x_test)))
        info = api.log_model(model, x_train)    # signature, input example, requirements
    result = api.register(cfg, data_hash=data_hash, run_id=..., model_uri=info.model_uri,
                          metrics=..., x_test=x_test, y_test=y_test)

Each helper is the shipped pipeline's own function (``pipeline.config``,
``pipeline.lineage``, ``pipeline.train``, ``pipeline.register``), so a team's DAG and
``train_pipeline`` write the same lineage. Light at import time (no mlflow, sklearn).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import RunConfig, from_conf
from pipeline.data import check_data_hash
from pipeline.errors import BadInputError, DataValidationError
from pipeline.lineage import DEFAULT_IGNORE, DatasetPathError, dataset_hash
from pipeline.metrics import TASKS, Task, resolve_gate, task_metrics

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd
    from mlflow import MlflowClient

    from pipeline.register import RegisterResult

__all__ = [
    "BadInputError",
    "RunConfig",
    "log_model",
    "read_conf",
    "register",
    "score",
    "tag_run",
    "tracking_client",
    "verify_data",
]


def read_conf(
    conf: Mapping[str, Any] | None,
    *,
    dag_run_id: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunConfig:
    """The run conf the watcher sent, typed and bounded (an unknown key or bad value is a
    BadInputError naming it: fail the task without retrying). ``dag_run_id`` (Airflow's
    ``dag_run.run_id``) is recorded unless the conf names one."""
    values = dict(conf or {})
    if dag_run_id is not None:
        values.setdefault("dag_run_id", dag_run_id)
    return from_conf(values, environ)


def verify_data(cfg: RunConfig, patterns: Sequence[str] = DEFAULT_IGNORE) -> str:
    """Hash ``cfg.data_dir`` as the watcher does and refuse data that changed since the
    trigger (DataHashMismatchError naming both hashes); returns the hash."""
    root = Path(cfg.data_dir)
    if not root.is_dir():
        raise DataValidationError("data directory does not exist", file=str(root))
    try:
        actual = dataset_hash(root, patterns)
    except DatasetPathError as exc:
        raise DataValidationError(f"{root}/{exc}") from None
    check_data_hash(actual, cfg.data_hash, root)
    return actual


def tag_run(cfg: RunConfig, data_hash: str, run_id: str | None = None) -> dict[str, str]:
    """Tag the active MLflow run (or ``run_id``) with the lineage the daemon reads:
    ``data_hash``, ``dag_run_id``, the git commit, ``data_dir``, ``watcher.trigger.*``
    (and, on the active run, the watcher's drift scores). Returns the tags."""
    from pipeline.train import lineage_tags

    tags = lineage_tags(
        data_hash, dag_run_id=cfg.dag_run_id, data_dir=cfg.data_dir, trigger=cfg.trigger
    )
    client = tracking_client(cfg)
    if run_id is None:
        import mlflow

        from pipeline.profile import log_drift

        mlflow.set_tags(tags)
        if isinstance(cfg.trigger.get("drift"), Mapping):
            log_drift(cfg.trigger["drift"])
    else:
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    return tags


def tracking_client(cfg: RunConfig) -> MlflowClient:
    """A client for the run's MLflow (``tracking_uri`` from the conf, else the worker's
    MLFLOW_TRACKING_URI); MLflow's fluent API (start_run, log_model) is pointed at it."""
    from pipeline import tracking

    return tracking.client(cfg.tracking_uri)


def log_model(model: Any, x_train: pd.DataFrame) -> Any:
    """Log the fitted model to the active run as the shipped pipeline does: signature,
    input example, pinned pip requirements (``mlflow.sklearn`` flavour, which the
    evaluator and ``if_better`` load). Returns MLflow's ModelInfo (``model_uri``,
    ``model_id``)."""
    from pipeline.train import log_model as log

    return log(model, x_train)


def score(task: Task, y_true: Any, y_pred: Any) -> dict[str, float]:
    """Every metric of ``task`` under the names the gate and the daemon read
    (``accuracy``, ``f1_score``; ``rmse``, ``mae``, ``r2``): log these on the run."""
    from pipeline.estimator import score as score_task

    return score_task(task, y_true, y_pred)


def register(
    cfg: RunConfig,
    *,
    data_hash: str,
    run_id: str,
    model_uri: str,
    metrics: Mapping[str, float],
    x_test: pd.DataFrame,
    y_test: pd.Series[Any],
    model_id: str | None = None,
) -> RegisterResult:
    """Register the run's model and promote it through the gate under the conf's rule
    (``promote``, ``metric``, ``threshold``, ``registry_mode``): the same flow as the
    shipped pipeline, so the new Production records ``watcher.previous_production``
    (what rollback follows) and the version carries ``data_hash`` and its metrics.
    ``x_test`` / ``y_test`` score current Production for ``promote = if_better``."""
    from pipeline.register import check_mode, check_rule, register_and_promote

    gate = resolve_gate(cfg.task or _task_of(metrics), cfg.metric, cfg.threshold)
    if gate.metric is None or gate.threshold is None:
        raise BadInputError(f"metric: cannot tell the gate metric from {sorted(metrics)}")
    return register_and_promote(
        tracking_client(cfg),
        name=cfg.model_name,
        run_id=run_id,
        model_uri=model_uri,
        model_id=model_id,
        data_hash=data_hash,
        metrics=dict(metrics),
        x_test=x_test,
        y_test=y_test,
        mode=check_mode(cfg.registry_mode),
        rule=check_rule(cfg.promote),
        threshold=gate.threshold,
        metric=gate.metric,
    )


def _task_of(metrics: Mapping[str, float]) -> Task | None:
    """The task whose metrics were all logged (a regression logs rmse, mae, r2)."""
    found = [t for t in TASKS if set(task_metrics(t)) <= set(metrics)]
    return found[0] if len(found) == 1 else None
