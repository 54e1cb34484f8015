"""The metric catalogue: which metrics exist, for which task, and which way is better.

One table for the training gate (``pipeline.validate``, ``promote = if_better``) and
the daemon (live-metric policy, rollback guards): a metric's direction is a fact about
the metric, never a per-call guess. Pure: no I/O, no third-party imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pipeline.errors import SettingError

Task = Literal["classification", "regression"]
Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class Metric:
    name: str
    task: Task
    direction: Direction  # which way is better
    lowest: float  # the metric's range, for bounding values that come from outside
    highest: float

    def passes(self, value: float, threshold: float) -> bool:
        """True when ``value`` meets ``threshold`` (at or above it, or at or below it)."""
        return value >= threshold if self.direction == "higher" else value <= threshold

    def better(self, value: float, than: float) -> bool:
        """True when ``value`` is strictly better than ``than``."""
        return value > than if self.direction == "higher" else value < than

    def symbol(self) -> str:
        """The comparison a passing value satisfies, for messages: ``>=`` or ``<=``."""
        return ">=" if self.direction == "higher" else "<="

    def in_range(self, value: float) -> bool:
        """A finite value within the metric's range: an infinite error or r2 is no
        measurement, whatever the range's open end says."""
        return math.isfinite(value) and self.lowest <= value <= self.highest


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", "classification", "higher", 0.0, 1.0),
        Metric("f1_score", "classification", "higher", 0.0, 1.0),
        Metric("rmse", "regression", "lower", 0.0, math.inf),
        Metric("mae", "regression", "lower", 0.0, math.inf),
        Metric("r2", "regression", "higher", -math.inf, 1.0),
    )
}
DEFAULT_METRIC: dict[Task, str] = {"classification": "accuracy", "regression": "rmse"}
TASKS: tuple[Task, ...] = ("classification", "regression")
# The gate's default threshold where one is meaningful whatever the data (a share of
# right answers); an error in the target's units (rmse, mae) has none: it must be set.
DEFAULT_THRESHOLD: dict[str, float] = {"accuracy": 0.9, "f1_score": 0.9}


@dataclass(frozen=True)
class Gate:
    """The resolved gate settings; ``None`` where the task is not known yet (it is then
    inferred from the estimator or the target column when the pipeline runs)."""

    task: Task | None
    metric: str | None
    threshold: float | None


def resolve_gate(task: str | None, metric_name: str | None, threshold: float | None) -> Gate:
    """Fill in what follows from what is given, refusing contradictions by key.

    The task follows from the metric and the metric from the task (its default); the
    threshold must lie in the metric's range, and defaults only where the metric has a
    default (``DEFAULT_THRESHOLD``).
    """
    if task is not None and task not in TASKS:
        raise SettingError("task", f"expected one of {list(TASKS)}, got {task!r}")
    if threshold is not None and math.isnan(threshold):
        raise SettingError("threshold", "expected a number, got nan")
    if metric_name is not None:
        found = metric_of(metric_name)
        if task is not None and found.task != task:
            raise SettingError(
                "metric",
                f"{metric_name} is a {found.task} metric but the task is {task} "
                f"(its metrics: {', '.join(task_metrics(task))})",
            )
        task = found.task
    elif task is not None:
        metric_name = DEFAULT_METRIC[task]
    if metric_name is None:
        return Gate(None, None, threshold)
    return Gate(METRICS[metric_name].task, metric_name, gate_threshold(metric_name, threshold))


def gate_threshold(metric_name: str, threshold: float | None) -> float:
    """The threshold for a known metric: the given one if finite and in the metric's
    range, else its default where it has one; a SettingError for ``threshold`` otherwise."""
    found = metric_of(metric_name)
    if threshold is None:
        if metric_name not in DEFAULT_THRESHOLD:
            raise SettingError(
                "threshold",
                f"required for {metric_name} ({found.direction} is better; passes at or "
                f"{'above' if found.direction == 'higher' else 'below'} it): it has no default",
            )
        threshold = DEFAULT_THRESHOLD[metric_name]
    if not found.in_range(threshold):
        raise SettingError(
            "threshold",
            f"expected a finite number in [{found.lowest}, {found.highest}] for {metric_name}, "
            f"got {threshold!r}",
        )
    return threshold


def unknown_metric(name: str) -> str:
    """The one message for a metric name not in the catalogue, naming the known ones."""
    return f"unknown metric {name!r} (known: {', '.join(sorted(METRICS))})"


def metric(name: str) -> Metric:
    """The catalogue entry for ``name``; ``KeyError`` names the known metrics."""
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(unknown_metric(name)) from None


def task_metrics(task: Task) -> list[str]:
    """The metrics a task logs, in catalogue order."""
    return [m.name for m in METRICS.values() if m.task == task]


def metric_of(name: str) -> Metric:
    """The catalogue entry for ``name``, or a SettingError for ``metric`` naming the known."""
    if name not in METRICS:
        raise SettingError("metric", unknown_metric(name))
    return METRICS[name]
