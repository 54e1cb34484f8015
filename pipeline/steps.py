"""The pipeline's steps as functions of small JSON-able dicts.

The DAG passes these dicts between tasks as XCom values and ``pipeline.run``
chains them in one process; both therefore do exactly the same thing. Every step
re-reads the data and checks it still hashes to what preprocess saw, so no step
ever works on different data than the run was triggered for.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import RunConfig, from_conf
from pipeline.data import Dataset, check_hash, check_splittable, load_dataset, split_dataset
from pipeline.errors import PipelineError
from pipeline.metrics import TASKS, Task

State = dict[str, Any]


class GateFailedError(PipelineError):
    """The registered model is below the quality-gate threshold."""


def _config(state: State) -> RunConfig:
    return from_conf(state["config"], environ={})


def _load(cfg: RunConfig, expected_hash: str | None) -> Dataset:
    dataset = load_dataset(cfg.data_dir, target=cfg.target)
    check_hash(dataset, expected_hash, cfg.data_dir)
    return dataset


def preprocess(cfg: RunConfig) -> State:
    """Validate the data (and the triggering hash), build the estimator and settle the
    task, gate metric and threshold; fails before anything is trained."""
    from pipeline import estimator

    dataset = _load(cfg, cfg.data_hash)
    resolved = estimator.resolve(
        cfg.estimator,
        estimator.effective_params(cfg.estimator, cfg.params, cfg.n_estimators, cfg.max_depth),
        task=cfg.task,
        metric=cfg.metric,
        threshold=cfg.threshold,
        target=dataset.target,
    )
    gate = resolved.gate
    check_splittable(dataset, cfg.test_size, str(gate.task))
    config = {**cfg.to_dict(), "task": gate.task, "metric": gate.metric}
    return {
        "config": {**config, "threshold": gate.threshold},
        "task_source": resolved.task_source,
        "data_hash": dataset.data_hash,
        "rows": dataset.n_rows,
        "files": [s.path for s in dataset.sources],
        "features": list(dataset.feature_names),
    }


def train(state: State) -> State:
    from pipeline.train import TrainParams
    from pipeline.train import train as fit

    cfg = _config(state)
    dataset = _load(cfg, state["data_hash"])
    params = TrainParams(
        cfg.n_estimators,
        cfg.max_depth,
        cfg.random_state,
        cfg.test_size,
        estimator=cfg.estimator,
        params=cfg.params,
        task=_task(cfg),
        task_source=state.get("task_source", "configured"),
    )
    result = fit(
        dataset,
        params,
        experiment=cfg.experiment,
        dag_run_id=cfg.dag_run_id,
        tracking_uri=cfg.tracking_uri,
        data_dir=cfg.data_dir,
        trigger=cfg.trigger,
        settings={
            "model_name": cfg.model_name,
            "registry_mode": cfg.registry_mode,
            "promote": cfg.promote,
            "metric": cfg.metric,
            "threshold": cfg.threshold,
        },
    )
    return {
        **state,
        "run_id": result.run_id,
        "model_uri": result.model_uri,
        "model_id": result.model_id,
        "task": result.task,
        "metrics": result.metrics,
        **result.metrics,  # top-level too: the seed's summary keys (accuracy, f1_score)
    }


def _task(cfg: RunConfig) -> Task:
    """The task preprocess settled (it is always set past that step)."""
    if cfg.task not in TASKS:
        raise PipelineError(f"task not settled before training: {cfg.task!r}")
    return cfg.task


def register(state: State) -> State:
    from pipeline import tracking
    from pipeline.register import check_mode, check_rule, register_and_promote

    cfg = _config(state)
    dataset = _load(cfg, state["data_hash"])
    # Same data + same seed = the candidate's own test split, to score Production fairly.
    split = split_dataset(dataset, test_size=cfg.test_size, seed=cfg.random_state, task=_task(cfg))
    result = register_and_promote(
        tracking.client(cfg.tracking_uri),
        name=cfg.model_name,
        run_id=state["run_id"],
        model_uri=state["model_uri"],
        model_id=state["model_id"],
        data_hash=state["data_hash"],
        metrics=state["metrics"],
        x_test=split.x_test,
        y_test=split.y_test,
        mode=check_mode(cfg.registry_mode),
        rule=check_rule(cfg.promote),
        threshold=_threshold(cfg),
        metric=str(cfg.metric),
    )
    return {
        **state,
        "version": result.version,
        "promoted": result.promoted,
        "reason": result.reason,
        "production": result.production,
        "previous_production": result.previous_production,
        "production_score": result.production_score,
    }


def _threshold(cfg: RunConfig) -> float:
    if cfg.threshold is None:
        raise PipelineError("threshold not settled before registering")
    return cfg.threshold


def validate(state: State, *, fail_below: bool = True) -> State:
    """Quality gate on the registered version; raises GateFailedError below the threshold."""
    from pipeline.validate import gate

    cfg = _config(state)
    result = gate(
        threshold=_threshold(cfg),
        metric=str(cfg.metric),
        model=cfg.model_name,
        version=state["version"],
        tracking_uri=cfg.tracking_uri,
    )
    out = {**state, "gate_passed": result.passed, "gate": result.line()}
    if fail_below and not result.passed:
        raise GateFailedError(result.line())
    return out


def summary(state: State) -> dict[str, Any]:
    """The one-line JSON summary fields printed by ``pipeline.run``."""
    cfg = state["config"]
    keys = (
        "run_id",
        "version",
        "promoted",
        "reason",
        "production",
        "previous_production",
        "production_score",
        *(state.get("metrics") or {}),  # the task's metrics: accuracy, f1_score / rmse, ...
        "data_hash",
        "gate_passed",
    )
    return {
        "model_name": cfg["model_name"],
        "registry_mode": cfg["registry_mode"],
        "task": cfg["task"],
        "metric": cfg["metric"],
        "threshold": cfg["threshold"],
        **{k: state.get(k) for k in keys},
    }
