"""FeedbackReader on a real (in-process SQLite) MLflow: what each poll costs in calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from watcher.backends.mlflow_observations import FeedbackReader, report_accuracy
from watcher.backends.mlflow_registry import MlflowRegistry


def _calls(reg: MlflowRegistry, reader: FeedbackReader, wanted: list[tuple[str, str]]) -> Any:
    before = reg.calls
    obs = reader.observations(wanted)
    return reg.calls - before, {k: [(o.value, o.samples) for o in v] for k, v in obs.items()}


def test_one_new_observation_costs_no_history_read(tmp_path: Path) -> None:
    """A run with one observation more than last poll is read from the poll's one
    search_runs (its latest metrics); several new ones re-read the histories. Either way
    the reader sees what a fresh reader (full histories) sees."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    reg = MlflowRegistry(uri, max_retries=0)
    client: Any = reg.client
    wanted = []
    for name in ("a", "b"):
        client.create_registered_model(name)
        client.create_model_version(name, source="s3://unused/m")
        reg.set_production(name, "1")
        wanted.append((name, "1"))
    t0 = datetime.now(UTC) - timedelta(hours=1)
    report_accuracy("a", 0.9, 100, at=t0, registry=reg)
    report_accuracy("b", 0.8, 200, at=t0, registry=reg)
    reader = FeedbackReader(reg)

    def fresh() -> Any:
        return _calls(reg, FeedbackReader(reg), wanted)[1]

    # First poll: experiment lookup + one search; one observation each needs no history.
    assert (2, fresh()) == _calls(reg, reader, wanted)
    assert [(0.9, 100)] == fresh()[("a", "1")]
    report_accuracy("a", 0.7, 300, at=t0 + timedelta(minutes=1), registry=reg)
    assert (1, fresh()) == _calls(reg, reader, wanted)
    assert [(0.9, 100), (0.7, 300)] == fresh()[("a", "1")]
    for i in range(2):
        report_accuracy("b", 0.6, 10 + i, at=t0 + timedelta(minutes=2 + i), registry=reg)
    assert (1 + 2, fresh()) == _calls(reg, reader, wanted)
    assert [(0.8, 200), (0.6, 10), (0.6, 11)] == fresh()[("b", "1")]
    assert (1, fresh()) == _calls(reg, reader, wanted)


def test_observations_of_several_metrics_pair_with_their_samples(tmp_path: Path) -> None:
    """One run per version holds live_<metric> for whatever was reported (accuracy, then
    rmse…), each step paired with its live_samples: the incremental read (one new
    observation per poll) and a fresh reader (full histories) see the same."""
    from watcher.backends.mlflow_observations import report_metric

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    reg = MlflowRegistry(uri, max_retries=0)
    client: Any = reg.client
    client.create_registered_model("m")
    client.create_model_version("m", source="s3://unused/m")
    reg.set_production("m", "1")
    t0 = datetime.now(UTC) - timedelta(hours=1)
    reader = FeedbackReader(reg)
    sent = [("accuracy", 0.9, 100), ("rmse", 41.5, 200), ("r2", -3.0, 50), ("rmse", 12.0, 70)]
    for i, (metric, value, samples) in enumerate(sent):
        report_metric("m", metric, value, samples, at=t0 + timedelta(minutes=i), registry=reg)
        reader.observations([("m", "1")])  # one new observation per poll
    for r in (reader, FeedbackReader(reg)):
        got = r.observations([("m", "1")])[("m", "1")]
        assert sent == [(o.metric, o.value, o.samples) for o in got]
