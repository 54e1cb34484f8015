"""The built-in evaluator: labelled feedback files in, live-accuracy observations in MLflow out.

Real pieces: pipeline.run trains and promotes the model into an in-process
SQLite MLflow; the evaluator watches a real directory (FsWatch + hasher) and
logs through watcher.backends.mlflow_observations.report_accuracy; observations are read back with
the monitor's FeedbackReader. Expected accuracies come from loading the
Production model independently (models:/NAME@production) and scoring with it.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from pipeline.lineage import FileEntry
from watcher.app import build_evaluator
from watcher.backends.mlflow_observations import FeedbackReader
from watcher.backends.mlflow_registry import MlflowRegistry
from watcher.config import Config, load_config
from watcher.monitor.evaluator import (
    Evaluator,
    Scored,
    Work,
    already_scored_rows,
    count_correct,
    plan,
    score,
)
from watcher.monitor.policy import Observation
from watcher.runtime.state import StateStore

REPO = Path(__file__).resolve().parents[2]
IRIS = REPO / "examples" / "data" / "iris.csv"
# Importing mlflow.pyfunc (done by log_model in the pipeline) warns about its own types.


# Pure decisions --------------------------------------------------------------------


def test_plan_skips_scored_content_and_known_bad_files() -> None:
    """Unchanged, copied/renamed and known-bad content is not work; new and changed files are."""
    files = {"a.csv": Scored("A", 10, 2), "b.csv": Scored("B", 10, 2)}
    scored_rows = {"A": 2, "B": 2}
    entries = [
        FileEntry("a.csv", "A", 10),  # unchanged
        FileEntry("b.csv", "B2", 20),  # changed (maybe appended)
        FileEntry("copy-of-a.csv", "A", 10),  # same content, another name
        FileEntry("bad.csv", "X", 5),  # known bad, unchanged
        FileEntry("fixed.csv", "Y", 5),  # was bad with other content
        FileEntry("notes.txt", "T", 3),  # not a feedback file
        FileEntry("new.parquet", "P", 7),
    ]
    p = plan(entries, files, scored_rows, {"bad.csv": "X", "fixed.csv": "old"})
    assert [
        Work("b.csv", "B2", 20, Scored("B", 10, 2)),
        Work("fixed.csv", "Y", 5, None),
        Work("new.parquet", "P", 7, None),
    ] == list(p.work)
    assert (("copy-of-a.csv", Scored("A", 10, 2)),) == p.known


@pytest.mark.parametrize(
    ("path", "old", "new", "expected"),
    [
        ("f.csv", b"h\n1\n2\n", b"h\n1\n2\n3\n", 2),  # appended whole lines
        ("f.csv", b"h\n1\n2\n", b"h\n9\n2\n3\n", 0),  # rewritten
        ("f.csv", b"h\n1\n2", b"h\n1\n23\n", 0),  # old content lacked a final newline
        ("f.csv", b"h\n1\n2\n", b"h\n1\n", 0),  # shrank
        ("f.parquet", b"h\n1\n2\n", b"h\n1\n2\n3\n", 0),  # only CSVs grow by lines
    ],
)
def test_already_scored_rows(path: str, old: bytes, new: bytes, expected: int) -> None:
    """Only a CSV that grew by whole lines keeps its old rows scored."""
    import hashlib

    prev = Scored(hashlib.sha256(old).hexdigest(), len(old), 2)
    assert expected == already_scored_rows(Work(path, "x", len(new), prev), new)


def test_count_correct_compares_labels_by_value() -> None:
    """1, 1.0, "1" are one class; text labels compare as text."""
    assert 3 == count_correct([1, 2.0, "a", "b"], ["1", 2, "a", "c"])


# Against a real MLflow -------------------------------------------------------------


def make_config(tmp_path: Path, uri: str, model: str, **extra: str) -> Config:
    return load_config(
        None,
        env={},
        overrides={
            "watch.data_dir": str(tmp_path / "data"),
            "state.dir": str(tmp_path / "state"),
            "watch.quiet_period": "0.2",
            "watch.polling_interval": "0.2",
            "mlflow.tracking_uri": uri,
            "pipeline.model_name": model,
            "monitor.feedback_dir": str(tmp_path / "feedback"),
            "monitor.poll_interval": "0.5",  # the evaluator's retry interval
            "alerts.log": False,
            **extra,
        },
    )


def train(uri: str, model: str, mode: str = "alias") -> None:
    from pipeline.run import main as pipeline_main

    argv = ["--data-dir", str(IRIS.parent), "--tracking-uri", uri, "--model-name", model]
    assert 0 == pipeline_main([*argv, "--promote", "always", "--registry-mode", mode])


def iris_rows() -> tuple[str, list[str]]:
    header, *rows = IRIS.read_text().splitlines()
    return header, rows


def write_feedback(path: Path, header: str, rows: list[str]) -> None:
    """Atomic save, as a well-behaved producer does (tmp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join([header, *rows]) + "\n")
    tmp.replace(path)


def expected_accuracy(uri: str, model_uri: str, header: str, rows: list[str]) -> float:
    """Score the rows with the Production model loaded independently of the evaluator."""
    import io

    import mlflow
    import pandas as pd

    frame = pd.read_csv(io.StringIO("\n".join([header, *rows])))
    mlflow.set_registry_uri(uri)
    mlflow.set_tracking_uri(uri)
    model = mlflow.sklearn.load_model(model_uri)
    predicted = model.predict(frame.drop(columns="target"))
    return float((predicted == frame["target"].to_numpy()).mean())


def drive(ev: Evaluator, until: Callable[[], bool], timeout: float = 30.0) -> None:
    """Tick like the daemon loop until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wait = ev.tick()
        if until():
            return
        time.sleep(min(max(wait, 0.01), 0.05))
    raise AssertionError(f"condition not reached within {timeout} s; health: {ev.health()}")


def settle(ev: Evaluator, seconds: float) -> None:
    """Tick for a while with rescans forced (to show that nothing happens)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ev.tick()
        time.sleep(0.05)
    ev.tree.request("reconcile", 0.0)  # a reconcile scan, too: the hash is the truth, not events
    ev.tick()


def observations(uri: str, model: str, version: str = "1") -> list[Observation]:
    reader = FeedbackReader(MlflowRegistry(uri, "alias"))
    return reader.observations([(model, version)])[(model, version)]


@pytest.mark.slow
def test_new_rows_are_scored_once_and_bad_files_skipped(
    tmp_path: Path, mlflow_sqlite_uri: str, state: StateStore
) -> None:
    """Feedback → one observation with the right accuracy/samples; same content → nothing;
    appended rows → only those scored; a bad file → logged error naming file/column/row."""
    model = f"eval-{uuid.uuid4().hex[:6]}"
    train(mlflow_sqlite_uri, model)
    cfg = make_config(tmp_path, mlflow_sqlite_uri, model)
    ev = build_evaluator(cfg, state, MlflowRegistry.from_config(cfg))
    header, rows = iris_rows()
    # Labels of some rows flipped, so accuracy is well below 1 and sensitive to the row set.
    first = [
        r[:-1] + ("2" if r.endswith(",0") else "0") if i % 4 == 0 else r
        for i, r in enumerate(rows[:90])
    ]
    feedback = cfg.monitor.feedback_dir
    assert feedback is not None
    ev.start()
    try:
        assert feedback.is_dir()
        write_feedback(feedback / "day1.csv", header, first)
        drive(ev, lambda: ev.status.observations == 1)
        (obs,) = observations(mlflow_sqlite_uri, model)
        want = expected_accuracy(mlflow_sqlite_uri, f"models:/{model}@production", header, first)
        assert 90 == obs.samples
        assert obs.value == pytest.approx(want)
        assert want < 0.9

        # The same content again: rewritten in place, and copied under another name.
        write_feedback(feedback / "day1.csv", header, first)
        shutil.copy(feedback / "day1.csv", feedback / "day1-copy.csv")
        settle(ev, 1.0)
        assert 1 == len(observations(mlflow_sqlite_uri, model))

        # Appended lines: only the new rows are scored.
        appended = rows[90:120]
        with (feedback / "day1.csv").open("a") as fh:
            fh.write("\n".join(appended) + "\n")
        drive(ev, lambda: ev.status.observations == 2)
        second = observations(mlflow_sqlite_uri, model)[1]
        want2 = expected_accuracy(
            mlflow_sqlite_uri, f"models:/{model}@production", header, appended
        )
        assert 30 == second.samples
        assert second.value == pytest.approx(want2)

        # A bad file: logged with file, column and row; skipped; nothing observed.
        bad_rows = [*rows[120:125], "6.0,oops,4.0,1.0,1"]
        with structlog.testing.capture_logs() as logs:
            write_feedback(feedback / "bad.csv", header, bad_rows)
            drive(ev, lambda: "bad.csv" in ev.status.bad_files)
            settle(ev, 0.5)
        errors = [e for e in logs if e["event"] == "feedback_file_invalid"]
        assert 1 == len(errors), logs
        assert "file 'bad.csv', column 'sepal_width', row 6" in errors[0]["error"]
        assert "'oops'" in errors[0]["error"]
        assert 2 == len(observations(mlflow_sqlite_uri, model))
        health = ev.health()
        assert health.ok
        assert "bad.csv" in health.detail["bad_files"]  # type: ignore[operator]
        assert 1 == len(state.events(kinds=["feedback.invalid"]))

        # Fixed: its rows are scored like any new content.
        write_feedback(feedback / "bad.csv", header, rows[120:126])
        drive(ev, lambda: ev.status.observations == 3)
        assert 6 == observations(mlflow_sqlite_uri, model)[2].samples
        assert {} == ev.status.bad_files
    finally:
        ev.stop()

    # A restart scores nothing again: what was scored is in the state DB.
    again = build_evaluator(cfg, state, MlflowRegistry.from_config(cfg))
    again.start()
    try:
        settle(again, 0.5)
        assert 3 == len(observations(mlflow_sqlite_uri, model))
        assert 0 == again.status.pending_files
    finally:
        again.stop()


@pytest.mark.slow
def test_stage_mode_waits_for_a_production_version(
    tmp_path: Path, mlflow_sqlite_uri: str, state: StateStore
) -> None:
    """Stage mode: no Production yet → error in health, work kept; once trained → scored."""
    model = f"eval-stage-{uuid.uuid4().hex[:6]}"
    cfg = make_config(tmp_path, mlflow_sqlite_uri, model, **{"mlflow.registry_mode": "stage"})
    ev = build_evaluator(cfg, state, MlflowRegistry.from_config(cfg))
    header, rows = iris_rows()
    feedback = cfg.monitor.feedback_dir
    assert feedback is not None
    ev.start()
    try:
        write_feedback(feedback / "f.csv", header, rows[::5])
        drive(ev, lambda: ev.status.last_error is not None)
        health = ev.health()
        assert health.ok
        assert "has no Production version" in str(health.detail["error"])
        assert 1 == health.detail["pending_files"]

        train(mlflow_sqlite_uri, model, mode="stage")
        drive(ev, lambda: ev.status.observations == 1)
        (obs,) = observations(mlflow_sqlite_uri, model)
        want = expected_accuracy(
            mlflow_sqlite_uri, f"models:/{model}/Production", header, rows[::5]
        )
        assert 30 == obs.samples
        assert obs.value == pytest.approx(want)
        assert "error" not in ev.health().detail
        assert "1" == ev.health().detail["model_version"]
    finally:
        ev.stop()


def test_registered_only_with_a_feedback_dir(tmp_path: Path, state: StateStore) -> None:
    """build_components adds the evaluator exactly when monitor.feedback_dir is set."""
    from watcher.app import build_components

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with_dir = make_config(tmp_path, uri, "m")
    without = load_config(
        None,
        env={},
        overrides={"watch.data_dir": str(tmp_path / "data"), "state.dir": str(tmp_path / "s")},
    )
    assert "evaluator" in [c.name for c in build_components(with_dir, state)]
    assert "evaluator" not in [c.name for c in build_components(without, state)]


# Regression feedback (#19) ------------------------------------------------------------


def test_score_matches_scikit_learn() -> None:
    """rmse, mae, r2, accuracy and f1_score as scikit-learn (and the pipeline) compute them."""
    import math

    from sklearn import metrics as skm

    y, p = [3.0, -0.5, 2.0, 7.0, 4.2], [2.5, 0.0, 2.0, 8.0, 3.9]
    assert score("rmse", y, p) == pytest.approx(math.sqrt(skm.mean_squared_error(y, p)))
    assert score("mae", y, p) == pytest.approx(skm.mean_absolute_error(y, p))
    assert score("r2", y, p) == pytest.approx(skm.r2_score(y, p))
    assert (1.0, 0.0) == (score("r2", [2.0, 2.0], [2.0, 2.0]), score("r2", [2.0, 2.0], [1, 3]))
    labels, said = [0, 1, 2, 2, 1], ["0", 1.0, 2, 1, 1]
    assert score("accuracy", labels, said) == pytest.approx(0.8)
    f1 = skm.f1_score(labels, [0, 1, 2, 1, 1], average="macro")
    assert score("f1_score", labels, said) == pytest.approx(f1)


def register_regressor(uri: str, model: str) -> tuple[Any, list[str], list[list[float]]]:
    """A LinearRegression on scikit-learn's diabetes data, logged and promoted (alias) the
    way the pipeline does; returns it, the feature names and the rows it did not see."""
    import mlflow
    import mlflow.sklearn
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    data = load_diabetes(as_frame=True)
    x, y = data.data, data.target
    fitted = LinearRegression().fit(x.iloc[:300], y.iloc[:300])
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(f"reg-{model}")
    with mlflow.start_run():
        # Feature names travel with the estimator (fitted on a frame): no input example,
        # whose pandas conversion warns inside MLflow.
        mlflow.sklearn.log_model(fitted, name="model", registered_model_name=model)
    MlflowRegistry(uri, "alias").set_production(model, "1")
    rows = [
        [*map(float, r), float(t)]
        for r, t in zip(x.iloc[300:].to_numpy(), y.iloc[300:], strict=True)
    ]
    return fitted, [str(c) for c in x.columns], rows


@pytest.mark.slow
def test_regression_feedback_scored_with_the_monitored_metric(
    tmp_path: Path, mlflow_sqlite_uri: str, state: StateStore
) -> None:
    """A regressor monitored on rmse: feedback rows → one live_rmse observation equal to
    the rmse of the model's own predictions; a non-numeric truth → bad file naming the row."""
    import math

    import pandas as pd

    model = f"eval-reg-{uuid.uuid4().hex[:6]}"
    fitted, features, rows = register_regressor(mlflow_sqlite_uri, model)
    cfg = make_config(tmp_path, mlflow_sqlite_uri, model, **{"monitor.max_rmse": "60"})
    ev = build_evaluator(cfg, state, MlflowRegistry.from_config(cfg))
    feedback = cfg.monitor.feedback_dir
    assert feedback is not None
    header = ",".join([*features, "target"])
    lines = [",".join(repr(v) for v in r) for r in rows[:80]]
    ev.start()
    try:
        write_feedback(feedback / "week1.csv", header, lines)
        drive(ev, lambda: ev.status.observations == 1)
        (obs,) = observations(mlflow_sqlite_uri, model)
        frame = pd.DataFrame([r[:-1] for r in rows[:80]], columns=features)
        errors = fitted.predict(frame) - [r[-1] for r in rows[:80]]
        want = math.sqrt(float((errors**2).mean()))
        assert ("rmse", 80) == (obs.metric, obs.samples)
        assert obs.value == pytest.approx(want)
        assert {"metric": "rmse", "model": model} == {
            k: ev.health().detail[k] for k in ("metric", "model")
        }

        bad = [*lines[:3], ",".join([*lines[3].split(",")[:-1], "high"])]
        with structlog.testing.capture_logs() as logs:
            write_feedback(feedback / "bad.csv", header, bad)
            drive(ev, lambda: "bad.csv" in ev.status.bad_files)
        (error,) = [e["error"] for e in logs if e["event"] == "feedback_file_invalid"]
        assert "'high' at data row 4 is not a finite number" in error
        assert "column 'target'" in error
        assert 1 == len(observations(mlflow_sqlite_uri, model))
    finally:
        ev.stop()
