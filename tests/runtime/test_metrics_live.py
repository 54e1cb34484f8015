"""The live-metric gauges (#19): one metric per model, accuracy also on its old gauge."""

from __future__ import annotations

from watcher.runtime.metrics import Metrics


def test_live_metric_gauge_follows_the_watched_metric() -> None:
    m = Metrics()
    m.set_live("iris", "accuracy", 0.93)
    m.set_live("house", "rmse", 41.2)
    text = m.render().decode()
    assert 'watcher_live_metric{metric="accuracy",model="iris"} 0.93' in text
    assert 'watcher_live_accuracy{model="iris"} 0.93' in text  # kept for existing dashboards
    assert 'watcher_live_metric{metric="rmse",model="house"} 41.2' in text
    assert 'watcher_live_accuracy{model="house"}' not in text
    m.set_live("iris", "f1_score", 0.8)  # the config changed: the old series goes
    text = m.render().decode()
    assert 'watcher_live_metric{metric="accuracy",model="iris"}' not in text
    assert 'watcher_live_accuracy{model="iris"}' not in text
