"""The metric catalogue: which metrics exist, for which task, and which way is better.

One table for the training gate (``pipeline.validate``, ``promote = if_better``) and
the daemon (live-metric policy, rollback guards): a metric's direction is a fact about
the metric, never a per-call guess. Pure: no I/O, no third-party imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

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
        return not math.isnan(value) and self.lowest <= value <= self.highest


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


def metric(name: str) -> Metric:
    """The catalogue entry for ``name``; ``KeyError`` names the known metrics."""
    try:
        return METRICS[name]
    except KeyError:
        known = ", ".join(sorted(METRICS))
        raise KeyError(f"unknown metric {name!r} (known: {known})") from None


def task_metrics(task: Task) -> list[str]:
    """The metrics a task logs, in catalogue order."""
    return [m.name for m in METRICS.values() if m.task == task]
