"""Run configuration: one dataclass filled from CLI args or an Airflow run conf.

Resolution order for each field: run conf / CLI value, then ``WATCHER_*`` env var
(the defaults of a hand-triggered DAG run), then the built-in default. The watcher
sends every pipeline setting in the conf, so its config wins over a worker's env.
Values are checked here, before anything is trained: a bad one is a BadInputError
(the DAG fails the task without retrying).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from pipeline.data import DEFAULT_SEED, DEFAULT_TARGET, DEFAULT_TEST_SIZE
from pipeline.errors import BadInputError
from pipeline.estimator import DEFAULT_ESTIMATOR
from pipeline.lineage import TRIGGER_KEYS
from pipeline.metrics import resolve_gate
from pipeline.register import check_mode, check_rule
from pipeline.train import DEFAULT_EXPERIMENT

DEFAULT_MODEL_NAME = "iris-classifier"
MAX_ESTIMATORS = 10_000
MAX_DEPTH = 1_000
ENV_DEFAULTS = {
    "data_dir": "WATCHER_DATA_DIR",
    "model_name": "WATCHER_MODEL_NAME",
    "registry_mode": "WATCHER_REGISTRY_MODE",
    "promote": "WATCHER_PROMOTE",
    "threshold": "WATCHER_THRESHOLD",
    "experiment": "WATCHER_EXPERIMENT",
    "target": "WATCHER_TARGET",
    "estimator": "WATCHER_ESTIMATOR",
    "params": "WATCHER_PARAMS",  # a JSON object
    "task": "WATCHER_TASK",
    "metric": "WATCHER_METRIC",
}


@dataclass(frozen=True, slots=True)
class RunConfig:
    data_dir: str
    data_hash: str | None = None
    target: str = DEFAULT_TARGET
    model_name: str = DEFAULT_MODEL_NAME
    registry_mode: str = "alias"
    promote: str = "if_better"
    estimator: str = DEFAULT_ESTIMATOR
    params: dict[str, Any] = field(default_factory=dict)
    task: str | None = None  # None: inferred (the estimator, else the target column)
    metric: str | None = None  # None: the task's default (accuracy, rmse)
    threshold: float | None = None  # None: the metric's default (0.9 for accuracy)
    n_estimators: int = 100
    max_depth: int | None = None
    random_state: int = DEFAULT_SEED
    test_size: float = DEFAULT_TEST_SIZE
    experiment: str = DEFAULT_EXPERIMENT
    dag_run_id: str | None = None
    tracking_uri: str | None = None
    trigger: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.data_dir:
            raise BadInputError("data_dir is required (run conf, --data-dir or WATCHER_DATA_DIR)")
        if not self.model_name:
            raise BadInputError("model_name must not be empty")
        check_mode(self.registry_mode)
        check_rule(self.promote)
        _check_range("n_estimators", self.n_estimators, 1, MAX_ESTIMATORS)
        if self.max_depth is not None:
            _check_range("max_depth", self.max_depth, 1, MAX_DEPTH)
        if self.estimator != DEFAULT_ESTIMATOR and (
            self.n_estimators != 100 or self.max_depth is not None
        ):
            raise BadInputError(
                "n_estimators/max_depth: they configure the default estimator only; "
                f"give {self.estimator}'s settings in params"
            )
        # The seed's RandomForestClassifier is known to classify without importing it.
        task = self.task
        if task is None and self.metric is None and self.estimator == DEFAULT_ESTIMATOR:
            task = "classification"
        gate = resolve_gate(task, self.metric, self.threshold)
        # Frozen, so filled in here: a resolved config round-trips through to_dict().
        # The task as configured (or the seed's): one derived from the metric is left to
        # the estimator check, which then names the metric as the conflicting key.
        object.__setattr__(self, "task", task)
        object.__setattr__(self, "metric", gate.metric)
        object.__setattr__(self, "threshold", gate.threshold)
        _check_range("random_state", self.random_state, 0, 2**32 - 1)  # numpy's seed range
        if not 0.0 < self.test_size < 1.0:
            raise BadInputError(f"test_size: expected a number in (0, 1), got {self.test_size!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:  # NaN fails too
        raise BadInputError(f"{name}: expected a number in [{low}, {high}], got {value!r}")


def _coerce(name: str, value: Any, kind: str) -> Any:
    """A conf value (JSON) or env value (string) as the field's type; anything else is
    a BadInputError naming the key (a list or a bool is never silently stringified)."""
    if value is None or (isinstance(value, str) and value == "" and "None" in kind):
        return None
    if kind.startswith("dict"):
        return _object(name, value)
    try:
        if isinstance(value, bool | list | dict):
            raise TypeError(value)
        if kind.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind.startswith("float"):
            return float(value)
        if not isinstance(value, str):
            raise TypeError(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BadInputError(f"{name}: expected {kind}, got {value!r}") from exc
    return value


def _object(name: str, value: Any) -> dict[str, Any]:
    """A JSON object: as sent in a run conf, or as text in an env var."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise BadInputError(f"{name}: expected a JSON object, got {value!r}") from exc
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise BadInputError(f"{name}: expected an object, got {value!r}")
    return dict(value)


def from_conf(conf: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> RunConfig:
    """Build a RunConfig from a run conf dict; unknown keys are rejected by name."""
    environ = os.environ if environ is None else environ
    known = {f.name: str(f.type) for f in fields(RunConfig) if f.name != "trigger"}
    unknown = sorted(set(conf) - set(known) - TRIGGER_KEYS - {"trigger"})
    if unknown:
        raise BadInputError(
            f"unknown run conf key(s) {unknown}; known: {sorted([*known, *TRIGGER_KEYS])}"
        )
    trigger = conf.get("trigger") or {}
    if not isinstance(trigger, Mapping):
        raise BadInputError(f"trigger: expected an object, got {trigger!r}")
    values: dict[str, Any] = {
        "trigger": {**trigger, **{k: conf[k] for k in TRIGGER_KEYS if conf.get(k) is not None}}
    }
    for name, kind in known.items():
        # An explicit null counts for a field that may be None (max_depth: unbounded).
        if name in conf and (conf[name] is not None or "None" in kind):
            values[name] = _coerce(name, conf[name], kind)
        elif name in ENV_DEFAULTS and environ.get(ENV_DEFAULTS[name]):
            values[name] = _coerce(name, environ[ENV_DEFAULTS[name]], kind)
    if "data_dir" not in values:
        values["data_dir"] = ""
    return RunConfig(**values)
