"""The metric catalogue: directions, ranges, and the error for an unknown name."""

from __future__ import annotations

import math

import pytest

from pipeline.metrics import DEFAULT_METRIC, METRICS, metric, task_metrics


def test_directions_decide_pass_and_better() -> None:
    acc, rmse = metric("accuracy"), metric("rmse")
    assert acc.passes(0.9, 0.9) and not acc.passes(0.89, 0.9)
    assert rmse.passes(40.0, 40.0) and not rmse.passes(40.1, 40.0)
    assert acc.better(0.95, 0.9) and not acc.better(0.9, 0.9)
    assert rmse.better(30.0, 40.0) and not rmse.better(41.0, 40.0)
    assert (acc.symbol(), rmse.symbol()) == (">=", "<=")


def test_ranges_bound_outside_values() -> None:
    assert metric("accuracy").in_range(1.0) and not metric("accuracy").in_range(1.01)
    assert metric("rmse").in_range(1e9) and not metric("rmse").in_range(-0.1)
    assert metric("r2").in_range(-5.0) and not metric("r2").in_range(math.nan)


def test_unknown_metric_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown metric 'auc'.*accuracy, f1_score, mae, r2, rmse"):
        metric("auc")


def test_every_task_has_its_default_metric() -> None:
    for task, name in DEFAULT_METRIC.items():
        assert METRICS[name].task == task and name in task_metrics(task)
