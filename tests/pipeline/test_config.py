"""Run conf → RunConfig: known fields, the watcher's trigger keys, and unknown keys."""

from __future__ import annotations

import pytest

from pipeline.config import from_conf
from pipeline.errors import BadInputError


def test_trigger_keys_are_kept_apart_from_training_parameters() -> None:
    """file_count/bytes/reason/note/drift/source_dir land in `trigger`, not in training
    parameters (with snapshots, data_dir is the frozen copy and source_dir the watched dir)."""
    cfg = from_conf(
        {
            "data_dir": "/d",
            "data_hash": "a" * 64,
            "file_count": 2,
            "bytes": 10,
            "reason": "data_changed",
            "drift": {"dataset_drift": True},
            "source_dir": "/live",
            "n_estimators": "50",
        },
        environ={},
    )
    assert 50 == cfg.n_estimators
    assert {
        "file_count": 2,
        "bytes": 10,
        "reason": "data_changed",
        "drift": {"dataset_drift": True},
        "source_dir": "/live",
    } == cfg.trigger
    # The steps pass the config along as a dict: it must round-trip.
    assert cfg == from_conf(cfg.to_dict(), environ={})


def test_unknown_key_named() -> None:
    """A typo in a hand-written run conf is rejected by name."""
    with pytest.raises(BadInputError, match=r"unknown run conf key\(s\) \['n_estimator'\]"):
        from_conf({"data_dir": "/d", "n_estimator": 5}, environ={})


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"n_estimators": "ten"}, r"n_estimators: expected int, got 'ten'"),
        ({"n_estimators": True}, r"n_estimators: expected int, got True"),
        ({"n_estimators": 0}, r"n_estimators: expected a number in \[1, 10000\], got 0"),
        ({"max_depth": 2.5}, r"max_depth: expected int \| None, got 2.5"),
        ({"max_depth": 0}, r"max_depth: expected a number in \[1, 1000\], got 0"),
        (
            {"threshold": 1.5},
            r"threshold: expected a finite number in \[0.0, 1.0\] for accuracy, got 1.5",
        ),
        ({"threshold": "nan"}, r"threshold: expected a number, got nan"),
        ({"metric": "rmse"}, r"threshold: required for rmse \(lower is better"),
        ({"metric": "auc"}, r"metric: unknown metric 'auc' \(known: accuracy, f1_score"),
        ({"task": "regression", "metric": "accuracy"}, r"metric: accuracy is a classification"),
        ({"task": "ranking"}, r"task: expected one of \['classification', 'regression'\]"),
        (
            {"metric": "rmse", "threshold": -1},
            r"threshold: expected a finite number in \[0.0, inf\]",
        ),
        ({"params": "[1]"}, r"params: expected an object, got \[1\]"),
        ({"params": "{"}, r"params: expected a JSON object"),
        (
            {"estimator": "sklearn.linear_model.Ridge", "n_estimators": 5},
            r"n_estimators/max_depth: they configure the default estimator only",
        ),
        ({"threshold": [0.5]}, r"threshold: expected float \| None, got \[0.5\]"),
        ({"model_name": {"a": 1}}, r"model_name: expected str, got \{'a': 1\}"),
        ({"promote": "sometimes"}, r"promote must be one of"),
        ({"registry_mode": "both"}, r"registry mode must be one of"),
        ({"test_size": 1}, r"test_size: expected a number in \(0, 1\), got 1.0"),
        ({"random_state": -1}, r"random_state: expected a number in \[0, 4294967295\], got -1"),
    ],
)
def test_bad_conf_values_are_bad_input_naming_the_key(
    conf: dict[str, object], message: str
) -> None:
    """A run conf comes from outside (the watcher or a hand trigger): every value is typed
    and bounded before anything is trained; a BadInputError fails the task without retries."""
    with pytest.raises(BadInputError, match=message):
        from_conf({"data_dir": "/d", **conf}, environ={})


def test_conf_wins_over_worker_env_and_null_max_depth_is_unbounded() -> None:
    """The watcher's settings beat the worker's WATCHER_* defaults; env fills only gaps."""
    env = {"WATCHER_PROMOTE": "always", "WATCHER_MODEL_NAME": "env-model", "WATCHER_TARGET": "y"}
    cfg = from_conf({"data_dir": "/d", "promote": "never", "max_depth": None}, environ=env)
    assert ("never", "env-model", "y", None) == (
        cfg.promote,
        cfg.model_name,
        cfg.target,
        cfg.max_depth,
    )


def test_the_seed_gate_is_resolved_and_a_regression_gate_follows_from_its_metric() -> None:
    """The default (the seed's RandomForest) resolves to accuracy >= 0.9 without importing
    anything; a regression metric brings its task; the resolved config round-trips."""
    seed = from_conf({"data_dir": "/d"}, environ={})
    assert ("classification", "accuracy", 0.9) == (seed.task, seed.metric, seed.threshold)
    env = {"WATCHER_ESTIMATOR": "sklearn.linear_model.Ridge", "WATCHER_PARAMS": '{"alpha": 2}'}
    cfg = from_conf({"data_dir": "/d", "metric": "rmse", "threshold": 40}, environ=env)
    assert ("sklearn.linear_model.Ridge", {"alpha": 2}) == (cfg.estimator, cfg.params)
    assert (None, "rmse", 40.0) == (cfg.task, cfg.metric, cfg.threshold)
    assert cfg == from_conf(cfg.to_dict(), environ={})
