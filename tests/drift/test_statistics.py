"""watcher.drift.stats: each statistic against scipy and hand-computed values, and the decisions."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from watcher.drift.stats import (
    ColumnDrift,
    DriftOptions,
    DriftReport,
    chi_square,
    column_drift,
    conf_fields,
    dataset_drift,
    drift_without_gain,
    js_distance,
    ks,
    normed_wasserstein,
    psi,
)

RNG_SEED = 20240601


def _normal(
    n: int, loc: float = 0.0, seed: int = RNG_SEED
) -> np.ndarray[Any, np.dtype[np.float64]]:
    return np.random.default_rng(seed).normal(loc, 1.0, n)


NUMERIC_PAIRS = [
    pytest.param(_normal(50), _normal(60, seed=2), id="same-dist-small"),
    pytest.param(_normal(300), _normal(200, 0.3, seed=3), id="small-shift"),
    pytest.param(_normal(2000), _normal(1500, 2.0, seed=4), id="large-shift"),
    pytest.param(np.arange(10.0), np.arange(5.0, 25.0), id="ranges"),
]

CATEGORICAL_PAIRS = [
    pytest.param(list("aabbbc" * 10), list("abbccc" * 9), id="three-cats"),
    pytest.param(list("xy" * 40), list("xyz" * 20), id="new-category"),
    pytest.param(["1", "2"] * 30 + ["3"], ["2"] * 40, id="one-side-single"),
]


class TestAgainstScipy:
    @pytest.mark.parametrize(("ref", "cur"), NUMERIC_PAIRS)
    def test_ks(self, ref: np.ndarray[Any, Any], cur: np.ndarray[Any, Any]) -> None:
        """KS statistic and p-value are scipy.stats.ks_2samp's."""
        expected = stats.ks_2samp(ref, cur)
        assert pytest.approx((expected.statistic, expected.pvalue)) == ks(ref, cur)

    @pytest.mark.parametrize(("ref", "cur"), NUMERIC_PAIRS)
    def test_normed_wasserstein(self, ref: np.ndarray[Any, Any], cur: np.ndarray[Any, Any]) -> None:
        """Wasserstein distance divided by the reference std (population std, as Evidently)."""
        expected = stats.wasserstein_distance(ref, cur) / np.std(ref)
        assert pytest.approx(expected) == normed_wasserstein(ref, cur)

    @pytest.mark.parametrize(("ref", "cur"), CATEGORICAL_PAIRS)
    def test_chi_square_is_contingency_test(self, ref: list[str], cur: list[str]) -> None:
        """chi-square = scipy chi2_contingency on the 2 x k count table, no Yates correction."""
        cats = sorted(set(ref) | set(cur))
        table = np.array([[ref.count(c) for c in cats], [cur.count(c) for c in cats]])
        expected = stats.chi2_contingency(table, correction=False)
        assert pytest.approx((expected.statistic, expected.pvalue)) == chi_square(ref, cur)

    @pytest.mark.parametrize(("ref", "cur"), CATEGORICAL_PAIRS)
    def test_jensen_shannon_categorical(self, ref: list[str], cur: list[str]) -> None:
        """JS distance = scipy jensenshannon of the two category frequency vectors."""
        cats = sorted(set(ref) | set(cur))
        p = np.array([ref.count(c) for c in cats]) / len(ref)
        q = np.array([cur.count(c) for c in cats]) / len(cur)
        assert pytest.approx(jensenshannon(p, q)) == js_distance(ref, cur, "cat")

    @pytest.mark.parametrize(("ref", "cur"), NUMERIC_PAIRS)
    def test_jensen_shannon_numeric_uses_pooled_sturges_bins(
        self, ref: np.ndarray[Any, Any], cur: np.ndarray[Any, Any]
    ) -> None:
        """Numeric JS bins both samples on Sturges' edges of the pooled data."""
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        p = np.histogram(ref, edges)[0] / len(ref)
        q = np.histogram(cur, edges)[0] / len(cur)
        assert pytest.approx(jensenshannon(p, q)) == js_distance(ref, cur, "num")


class TestHandComputed:
    @pytest.mark.parametrize(
        ("name", "value", "expected"),
        [
            ("ks disjoint", lambda: ks(np.array([1.0, 2, 3]), np.array([4.0, 5, 6]))[0], 1.0),
            (
                "wasserstein",
                lambda: normed_wasserstein(np.array([0.0, 1]), np.array([1.0, 2])),
                2.0,
            ),
            (
                "wasserstein constant reference floors the std at 0.001",
                lambda: normed_wasserstein(np.array([1.0, 1]), np.array([1.0, 1.001])),
                0.5,
            ),
            (
                "js disjoint",
                lambda: js_distance(["a"] * 5, ["b"] * 5, "cat"),
                math.sqrt(math.log(2)),
            ),
            ("js identical", lambda: js_distance(list("abc"), list("cba"), "cat"), 0.0),
            (
                "chi2 2x2",
                lambda: chi_square(["x"] * 10 + ["y"] * 10, ["x"] * 20)[0],
                (25 / 15 + 25 / 5) * 2,
            ),
            ("chi2 single category", lambda: chi_square(["a"] * 3, ["a"] * 9), (0.0, 1.0)),
            (
                "psi categorical 50/50 vs 90/10",
                lambda: psi(["a"] * 50 + ["b"] * 50, ["a"] * 90 + ["b"] * 10, "cat"),
                0.4 * math.log(0.9 / 0.5) + 0.4 * math.log(0.5 / 0.1),
            ),
            ("psi identical", lambda: psi(np.arange(100.0), np.arange(100.0), "num"), 0.0),
            (
                "psi: all current values beyond the reference range land in the top bin",
                lambda: psi(np.arange(100.0), np.full(100, 1000.0), "num"),
                # 10 decile bins: 9 at 0.1 vs floor 1e-4, one at 0.1 vs 1.0.
                9 * (0.1 - 1e-4) * math.log(0.1 / 1e-4) + (0.1 - 1.0) * math.log(0.1 / 1.0),
            ),
        ],
    )
    def test_value(self, name: str, value: Any, expected: Any) -> None:
        """Known closed-form values."""
        assert pytest.approx(expected) == value(), name


class TestColumnDecision:
    def test_identical_samples_do_not_drift_with_any_method(self) -> None:
        """Identical reference and current: no drift for every test and distance."""
        small, large = _normal(500), _normal(3000)
        cats = list("abcab" * 100)
        cases = [
            (small, "num", DriftOptions(), "ks"),
            (large, "num", DriftOptions(), "wasserstein"),
            (cats, "cat", DriftOptions(), "chisquare"),
            (cats * 5, "cat", DriftOptions(), "jensenshannon"),
            (large, "num", DriftOptions(method="psi"), "psi"),
            (cats, "cat", DriftOptions(method="psi"), "psi"),
        ]
        for values, kind, opts, test in cases:
            result = column_drift("c", values, values, kind, opts)  # type: ignore[arg-type]
            assert (test, False) == (result.test, result.drifted)

    def test_two_sigma_shift_drifts_with_every_method(self) -> None:
        """A +2 sigma shift is caught by KS, Wasserstein and PSI alike."""
        for n, opts, test in [
            (500, DriftOptions(), "ks"),
            (3000, DriftOptions(), "wasserstein"),
            (3000, DriftOptions(method="psi"), "psi"),
        ]:
            result = column_drift("c", _normal(n), _normal(n, 2.0, seed=9), "num", opts)
            assert (test, True) == (result.test, result.drifted)

    def test_thresholds_are_inclusive_for_distances_and_strict_for_p(self) -> None:
        """Distance >= threshold drifts; a p-value drifts only when strictly below."""
        ref, cur = _normal(2000), _normal(2000, 0.1, seed=5)
        distance = normed_wasserstein(ref, cur)
        at = column_drift("c", ref, cur, "num", DriftOptions(threshold=distance))
        above = column_drift("c", ref, cur, "num", DriftOptions(threshold=distance * 1.001))
        assert (True, False) == (at.drifted, above.drifted)
        small_ref, small_cur = ref[:300], cur[:300]
        p = ks(small_ref, small_cur)[1]
        at_p = column_drift("c", small_ref, small_cur, "num", DriftOptions(p_value=p))
        above_p = column_drift("c", small_ref, small_cur, "num", DriftOptions(p_value=p * 1.001))
        assert (False, True) == (at_p.drifted, above_p.drifted)

    def test_low_cardinality_numeric_is_compared_as_categories(self) -> None:
        """A numeric column with <= 5 distinct reference values uses chi-square, not KS."""
        result = column_drift("flag", [0, 1] * 100, [0] * 150 + [1] * 50, "num")
        assert ("chisquare", "num", True) == (result.test, result.kind, result.drifted)

    def test_reference_size_picks_test_or_distance(self) -> None:
        """<= max_test_rows reference rows: a test with a p-value; above: a distance."""
        at_limit = column_drift("c", _normal(1000), _normal(10), "num")
        above = column_drift("c", _normal(1001), _normal(10), "num")
        assert ("ks", True) == (at_limit.test, at_limit.p_value is not None)
        assert ("wasserstein", None) == (above.test, above.p_value)

    def test_nan_and_inf_are_dropped_from_numeric_samples(self) -> None:
        """Non-finite values are ignored; the row counts say how many were used."""
        result = column_drift("c", [1.0, 2.0, math.nan, 3.0], [1.0, math.inf, 2.0, 3.0], "num")
        assert (3, 3, False) == (result.reference_rows, result.current_rows, result.drifted)

    @pytest.mark.parametrize(
        ("ref", "cur", "kind", "message"),
        [
            ([math.nan], [1.0], "num", "column 'c': the reference sample has no usable values"),
            ([1.0], [], "num", "column 'c': the current sample has no usable values"),
            (["x"], [1.0], "num", "column 'c': reference sample has non-numeric values"),
            ([1.0], [1.0], "text", "column 'c': kind must be 'num' or 'cat'"),
        ],
    )
    def test_unusable_input_names_the_column(
        self, ref: list[Any], cur: list[Any], kind: Any, message: str
    ) -> None:
        """Bad samples raise ValueError naming the column."""
        with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
            column_drift("c", ref, cur, kind)

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"method": "ks"}, "method"),
            ({"p_value": 0.0}, "p_value"),
            ({"threshold": -1.0}, "threshold"),
            ({"drift_share": 0.0}, "drift_share"),
            ({"drift_share": 1.5}, "drift_share"),
            ({"psi_bins": 1}, "psi_bins"),
        ],
    )
    def test_options_reject_bad_values_naming_the_field(
        self, kwargs: dict[str, Any], field: str
    ) -> None:
        """DriftOptions validates on construction."""
        with pytest.raises(ValueError, match=f"^{field}:"):
            DriftOptions(**kwargs)


def _frame(n: int, seed: int, shift: dict[str, float] | None = None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {name: rng.normal(10.0, 2.0, n) for name in ("a", "b", "c", "d")}
    cols["label"] = rng.choice(["x", "y", "z"], n).tolist()
    for name, sigmas in (shift or {}).items():
        cols[name] = cols[name] + sigmas * 2.0
    return cols


KINDS: dict[str, Any] = {"a": "num", "b": "num", "c": "num", "d": "num", "label": "cat"}


class TestDataset:
    @pytest.mark.parametrize("n", [400, 4000], ids=["tests", "distances"])
    def test_identical_samples_no_drift(self, n: int) -> None:
        """Reference compared with itself: no column and no dataset drift."""
        ref = _frame(n, 1)
        report = dataset_drift(ref, ref, KINDS)
        assert ((), 0.0, False) == (report.drifted_columns, report.share, report.dataset_drift)

    @pytest.mark.parametrize("n", [400, 4000], ids=["tests", "distances"])
    def test_shifted_column_drifts_alone(self, n: int) -> None:
        """+2 sigma on column 'b' of an independent sample: 'b' drifts and nothing else."""
        report = dataset_drift(_frame(n, 1), _frame(n, 2, shift={"b": 2.0}), KINDS)
        assert (("b",), 0.2, False) == (report.drifted_columns, report.share, report.dataset_drift)

    def test_dataset_drift_at_drift_share(self) -> None:
        """Dataset drift when drifted/total >= drift_share (inclusive; 3 of 5 at 0.5 and 0.6)."""
        cur = _frame(400, 2, shift={"a": 2.0, "b": 2.0, "c": 2.0})
        assert dataset_drift(_frame(400, 1), cur, KINDS).dataset_drift is True
        exactly = dataset_drift(_frame(400, 1), cur, KINDS, DriftOptions(drift_share=0.6))
        assert (0.6, True) == (exactly.share, exactly.dataset_drift)
        above = dataset_drift(_frame(400, 1), cur, KINDS, DriftOptions(drift_share=0.61))
        assert above.dataset_drift is False

    def test_missing_columns_count_as_drifted_new_ones_are_listed(self) -> None:
        """A reference column absent from the current data drifts; extra columns do not count."""
        cur = _frame(400, 2)
        del cur["a"]
        cur["extra"] = [1.0] * 400
        report = dataset_drift(_frame(400, 1), cur, KINDS)
        assert (("a",), ("extra",), ("a",)) == (
            report.missing_columns,
            report.new_columns,
            report.drifted_columns,
        )
        assert pytest.approx(0.2) == report.share

    def test_report_serialises_to_json(self) -> None:
        """to_dict and conf_fields are plain JSON (no NaN/inf), with per-column scores."""
        report = dataset_drift(
            _frame(400, 1), _frame(400, 2, shift={"d": 3.0}), KINDS, data_hash="h" * 64
        )
        text = json.dumps(report.to_dict(), allow_nan=False)
        assert '"drifted_columns": ["d"]' in text
        conf = conf_fields(report)
        json.dumps(conf, allow_nan=False)
        assert ["d"] == conf["drift"]["drifted_columns"]
        assert {"a", "b", "c", "d", "label"} == set(conf["drift"]["scores"])
        assert report.column("d").p_value == conf["drift"]["scores"]["d"]
        assert "h" * 64 == conf["drift"]["data_hash"]

    def test_non_finite_score_becomes_null_in_json(self) -> None:
        """A non-finite statistic is written as null, never as Infinity."""
        col = ColumnDrift("c", "num", "psi", math.inf, None, 0.1, True, 1, 1)
        report = DriftReport(columns=(col,), drift_share=0.5)
        assert conf_fields(report)["drift"]["scores"] == {"c": None}
        assert col.to_dict()["statistic"] is None


class TestDriftWithoutGain:
    @pytest.mark.parametrize(
        ("drifted", "new", "prod", "expected"),
        [
            (True, 0.90, 0.95, True),
            (True, 0.95, 0.95, True),  # equal is no gain
            (True, 0.96, 0.95, False),
            (False, 0.50, 0.95, False),  # no drift: nothing to say
            (True, None, 0.95, False),  # run failed: no accuracy to judge
            (True, 0.90, None, False),  # no Production version to compare with
        ],
    )
    def test_rule(
        self, drifted: bool, new: float | None, prod: float | None, expected: bool
    ) -> None:
        """Alert only when the data drifted and the new accuracy is not above Production's."""
        col = ColumnDrift("c", "num", "ks", 0.9, 1e-9 if drifted else 0.9, 0.05, drifted, 9, 9)
        report = DriftReport(columns=(col,), drift_share=0.5)
        assert expected is drift_without_gain(report, new, prod)
        # Same answer from the conf block the outbox keeps until the run finishes.
        assert expected is drift_without_gain(conf_fields(report)["drift"], new, prod)
