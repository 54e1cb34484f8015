"""pipeline.profile: building, bounding, serialising profiles, and drift tags for runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from pipeline.profile import (
    MAX_SAMPLE_ROWS,
    MAX_VALUE_CHARS,
    PROFILE_ARTIFACT,
    Profile,
    ProfileError,
    build_profile,
    category_value,
    drift_tags_and_metrics,
    log_profile,
)

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


def _iris() -> pd.DataFrame:
    from sklearn.datasets import load_iris

    frame: pd.DataFrame = load_iris(as_frame=True).frame
    return frame


class TestBuild:
    def test_iris_statistics_and_kinds(self) -> None:
        """Features are numeric with pandas' statistics; the target is categorical with counts."""
        df = _iris()
        profile = build_profile(df, "target", data_hash="a" * 64, now=NOW)
        col = profile.columns[0]
        assert ("sepal length (cm)", "num", "feature") == (col.name, col.kind, col.role)
        assert pytest.approx(df["sepal length (cm)"].mean()) == col.mean
        assert pytest.approx(df["sepal length (cm)"].std(ddof=0)) == col.std
        assert (4.3, 7.9, 150) == (col.min, col.max, col.count)
        assert pytest.approx(df["sepal length (cm)"].median()) == (col.quantiles or {})["p50"]
        target = profile.columns[-1]
        assert ("cat", "target", {"0": 50, "1": 50, "2": 50}) == (
            target.kind,
            target.role,
            dict(target.top or {}),
        )
        assert (150, 150, "2026-01-31T12:00:00+00:00") == (
            profile.n_rows,
            profile.sample_rows,
            profile.created_at,
        )
        # Small data: the sample is the data itself, in order.
        assert tuple(df["petal width (cm)"]) == profile.sample["petal width (cm)"]

    def test_sample_is_bounded_to_5000_rows_and_seeded(self) -> None:
        """20,000 rows: a 5,000-row sample, the same for the same seed, different otherwise."""
        rng = np.random.default_rng(0)
        df = pd.DataFrame({"x": rng.normal(size=20_000), "y": rng.integers(0, 3, 20_000)})
        df["label"] = rng.choice(["a", "b"], 20_000)
        first = build_profile(df, "label", now=NOW)
        assert MAX_SAMPLE_ROWS == first.sample_rows == len(first.sample["x"])
        assert first == build_profile(df, "label", now=NOW)
        assert first.sample != build_profile(df, "label", seed=1, now=NOW).sample
        # Statistics still describe all rows.
        assert 20_000 == first.columns[0].count

    def test_profile_json_is_bounded_for_wide_tables_and_long_values(self) -> None:
        """Many columns shrink the sample (<= 500,000 cells); long categories are cut."""
        rng = np.random.default_rng(1)
        wide = pd.DataFrame(rng.normal(size=(3_000, 250)), columns=[f"f{i}" for i in range(250)])
        wide["label"] = ["v" * 10_000 + str(i % 7) for i in range(3_000)]
        profile = build_profile(wide, "label", now=NOW)
        assert 500_000 // 251 == profile.sample_rows
        assert all(len(v) <= MAX_VALUE_CHARS for v in profile.sample["label"])
        text = profile.to_json()
        # <= 500,000 cells of <= ~24 bytes each, plus statistics.
        assert len(text) < 12_000_000
        top = profile.columns[-1].top or {}
        assert 1 == len(top)  # every long value cuts to the same 200 characters
        assert category_value("v" * 10_000) in top

    def test_missing_values_become_null_and_are_counted(self) -> None:
        """NaN numbers and None categories are stored as null and counted as missing."""
        df = pd.DataFrame({"x": [1.0, np.nan, 3.0], "c": ["a", None, "b"], "t": [0, 1, 0]})
        profile = build_profile(df, "t", now=NOW)
        x, c = profile.columns[0], profile.columns[1]
        assert ((1.0, None, 3.0), 1, 2) == (profile.sample["x"], x.missing, x.count)
        assert (("a", None, "b"), 1, "cat") == (profile.sample["c"], c.missing, c.kind)
        json.loads(profile.to_json())

    @pytest.mark.parametrize(
        ("df", "target", "message"),
        [
            (pd.DataFrame({"x": [1.0]}), "target", "target column 'target' not in the data"),
            (pd.DataFrame({"x": []}), None, "cannot profile an empty table"),
        ],
    )
    def test_bad_input(self, df: pd.DataFrame, target: str | None, message: str) -> None:
        """Unusable tables raise ProfileError saying why."""
        with pytest.raises(ProfileError, match=message):
            build_profile(df, target)


class TestSerialisation:
    def test_round_trip(self) -> None:
        """from_json(to_json(p)) == p."""
        profile = build_profile(_iris(), "target", data_hash="b" * 64, now=NOW)
        assert profile == Profile.from_json(profile.to_json())

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("{nope", "not JSON"),
            ("[]", "expected a JSON object"),
            ('{"schema": 99}', "unsupported profile schema 99"),
            ('{"schema": 1, "columns": []}', "malformed profile"),
            (
                '{"schema": 1, "n_rows": 2, "sample_rows": 2, "sample": {"x": [1]},'
                ' "columns": [{"name": "x", "kind": "num", "count": 2}]}',
                "column 'x': sample has 1 \\(expected 2\\)",
            ),
        ],
    )
    def test_malformed_profiles_are_clear_errors(self, text: str, message: str) -> None:
        """A broken artifact is a ProfileError naming the source, not a KeyError."""
        with pytest.raises(ProfileError, match=f"^run r1/{PROFILE_ARTIFACT}: {message}"):
            Profile.from_json(text, source=f"run r1/{PROFILE_ARTIFACT}")

    def test_log_profile_needs_an_active_run(self) -> None:
        """Logging outside a run is an error, not a silently created run."""
        with pytest.raises(ProfileError, match="active MLflow run"):
            log_profile(build_profile(_iris(), "target"))


class TestDriftTags:
    def test_conf_block_becomes_tags_and_metrics(self) -> None:
        """The trigger conf's drift block maps to drift.* tags and one metric per column."""
        tags, metrics = drift_tags_and_metrics(
            {
                "reference": "iris v1",
                "method": "auto",
                "dataset_drift": True,
                "share": 0.6,
                "drifted_columns": ["petal length (cm)", "b"],
                "scores": {"petal length (cm)": 1e-30, "b": 0.2, "c": None},
            }
        )
        assert {
            "drift.dataset_drift": "true",
            "drift.share": "0.6",
            "drift.columns": "petal length (cm),b",
            "drift.reference": "iris v1",
            "drift.method": "auto",
        } == tags
        assert {"drift_share": 0.6, "drift.petal length _cm_": 1e-30, "drift.b": 0.2} == metrics
