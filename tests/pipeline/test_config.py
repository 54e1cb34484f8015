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
