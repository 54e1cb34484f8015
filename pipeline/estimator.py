"""The configured estimator: import it, build it with its params, know its task, score it.

``estimator`` is an import path, either of a scikit-learn-compatible class
(``"sklearn.ensemble.HistGradientBoostingRegressor"``) or of a factory that returns
one (``"mypkg.models:make_pipeline"``); ``params`` are the constructor's (or the
factory's) keyword arguments. Everything is checked without training, so
``watcher check-config`` and the pipeline's first step refuse a bad one by key.
sklearn is imported inside functions: this module is imported by light paths.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import SettingError
from pipeline.metrics import Gate, Task, resolve_gate

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_ESTIMATOR = "sklearn.ensemble.RandomForestClassifier"
# The default estimator's own settings, kept as top-level keys (the seed's param names).
FOREST_KEYS = ("n_estimators", "max_depth")
# A numeric target with more distinct values than this is a quantity, not a label.
MAX_CLASSES_INFERRED = 20


@dataclass(frozen=True)
class Resolved:
    """A built estimator with its gate settings; ``task_source`` says how the task was
    found: ``configured`` (task or metric given), ``estimator`` or ``target``."""

    estimator: Any
    gate: Gate
    task_source: str


def effective_params(
    path: str, params: Mapping[str, Any], n_estimators: int, max_depth: int | None
) -> dict[str, Any]:
    """The constructor's keyword arguments. The default RandomForest takes the seed's
    ``n_estimators`` / ``max_depth`` settings (``params`` may add others, not repeat
    them); any other estimator takes ``params`` alone."""
    if path != DEFAULT_ESTIMATOR:
        return dict(params)
    for key in FOREST_KEYS:
        if key in params:
            raise SettingError(f"params.{key}", f"set {key} itself for the default estimator")
    return {"n_estimators": n_estimators, "max_depth": max_depth, **params}


# Code named by the config runs (it is trusted like the unit file); what it raises must
# still end as one line naming the key: SystemExit too (``sys:exit`` would exit 0, silent).
_FAILURES = (Exception, SystemExit)
MAX_SHOWN = 120  # characters of a path echoed in an error


def _shown(text: str) -> str:
    return repr(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "…")


def load(path: str) -> Any:
    """The object at ``module.attr`` or ``module:attr`` (``attr`` may be dotted)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise SettingError(
            "estimator", f"expected 'module.Name' or 'module:factory', got {_shown(path)}"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except _FAILURES as exc:  # ImportError, or the module itself failing to import
        raise SettingError("estimator", f"cannot import {_shown(module_name)}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise SettingError(
                "estimator", f"{_shown(module_name)} has no {_shown(attr)}"
            ) from None
    return obj


def is_estimator(obj: Any) -> bool:
    return all(callable(getattr(obj, m, None)) for m in ("fit", "predict", "get_params"))


def build(path: str, params: Mapping[str, Any], *, random_state: int | None = None) -> Any:
    """An unfitted estimator from ``path`` and ``params``; SettingError names the key.

    A class's keyword names are checked against its constructor; its values by the
    estimator's own parameter validation where it has one (scikit-learn's), without
    fitting. A factory is called. ``random_state`` is set when the estimator has one
    and ``params`` does not (the split's seed: reproducible runs).
    """
    target = load(path)
    est: Any
    if inspect.isclass(target):
        if not is_estimator(target):
            raise SettingError("estimator", f"{path} is not an estimator (no fit/predict)")
        _check_names(path, target, params)
        try:
            est = target(**params)
        except _FAILURES as exc:
            raise SettingError("params", f"rejected by {path}: {exc}") from None
    elif callable(target):
        try:
            est = target(**params)
        except _FAILURES as exc:
            # Without params, a failing call means it is no factory (os.path:join).
            key = "params" if params else "estimator"
            raise SettingError(key, f"calling {path}({', '.join(params)}) failed: {exc}") from None
        if not is_estimator(est):
            raise SettingError(
                "estimator", f"the factory {path} returned {type(est).__name__}, not an estimator"
            )
    else:
        raise SettingError("estimator", f"{path} is a {type(target).__name__}, not a class")
    _validate_values(path, est)
    seeded = random_state is not None and "random_state" not in params
    if seeded and "random_state" in est.get_params(deep=False):
        est.set_params(random_state=random_state)
    return est


def _check_names(path: str, cls: type, params: Mapping[str, Any]) -> None:
    sig = inspect.signature(cls)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    known = [n for n, p in sig.parameters.items() if p.kind is not p.VAR_POSITIONAL]
    for name in params:
        if name not in known:
            raise SettingError(
                f"params.{name}", f"not a parameter of {path} (its parameters: {known})"
            )


def _validate_values(path: str, est: Any) -> None:
    """scikit-learn checks parameter values at fit time; its check runs here instead."""
    check = getattr(est, "_validate_params", None)
    if not callable(check):
        return
    try:
        check()
    except (ValueError, TypeError) as exc:
        raise SettingError("params", f"rejected by {path}: {exc}") from None


def estimator_task(est: Any) -> Task | None:
    """The estimator's own task (scikit-learn's tags), or None when it states none."""
    from sklearn.base import is_classifier, is_regressor

    if is_regressor(est):
        return "regression"
    if is_classifier(est):
        return "classification"
    return None


def target_task(y: pd.Series[Any]) -> Task:
    """A numeric target with fractions or many distinct values is a regression."""
    import pandas as pd

    numbers = pd.to_numeric(y, errors="coerce")
    if numbers.isna().any():
        return "classification"  # text labels
    if not (numbers == numbers.round()).all() or numbers.nunique() > MAX_CLASSES_INFERRED:
        return "regression"
    return "classification"


def resolve(
    path: str,
    params: Mapping[str, Any],
    *,
    task: str | None,
    metric: str | None,
    threshold: float | None,
    random_state: int | None = None,
    target: pd.Series[Any] | None = None,
) -> Resolved:
    """Build the estimator and settle the task (configured > estimator > target)."""
    est = build(path, params, random_state=random_state)
    gate = resolve_gate(task, metric, threshold)
    source = "configured"
    own = estimator_task(est)
    if gate.task is None:
        found = own or (target_task(target) if target is not None else None)
        source = "estimator" if own else "target"
        gate = resolve_gate(found, None, threshold) if found else gate
    elif own is not None and own != gate.task:
        key, what = (
            ("metric", f"{metric} is a {gate.task} metric")
            if task is None
            else ("task", f"the task is {task}")
        )
        raise SettingError(key, f"{path} is a {own} estimator, but {what}")
    return Resolved(est, gate, source)


def score(task: Task, y_true: Any, y_pred: Any) -> dict[str, float]:
    """Every metric the task logs (``pipeline.metrics.task_metrics``), by name."""
    from sklearn import metrics as skm

    if task == "classification":
        values = {
            "accuracy": skm.accuracy_score(y_true, y_pred),
            "f1_score": skm.f1_score(y_true, y_pred, average="macro"),
        }
    else:
        values = {
            "rmse": skm.root_mean_squared_error(y_true, y_pred),
            "mae": skm.mean_absolute_error(y_true, y_pred),
            "r2": skm.r2_score(y_true, y_pred),
        }
    return {k: float(v) for k, v in values.items()}
