"""Data drift between a reference sample and a current sample, per column and per dataset.

Pure: numpy/scipy only, no I/O, no clock. The defaults follow Evidently's:

- reference sample of at most ``max_test_rows`` (1,000) rows: a two-sample test,
  Kolmogorov-Smirnov for numeric columns and chi-square for categorical ones;
  a column drifts when ``p < p_value`` (0.05);
- larger reference samples, where any test rejects on trivial differences: a
  distance, Wasserstein normalised by the reference standard deviation for
  numeric columns, Jensen-Shannon for categorical ones; a column drifts when the
  distance is ``>= threshold`` (0.1);
- ``method="psi"``: the Population Stability Index on every column instead,
  drift at ``>= threshold`` (0.1, the usual PSI rule of thumb).

A numeric column with at most five distinct reference values is treated as
categorical, as Evidently does: a KS test on a few discrete values is
meaningless. The dataset drifts when at least ``drift_share`` of the columns do.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

# scipy is imported inside the test functions: `from scipy import stats` costs 2-5 s of
# CPU, and this module is imported by every `watcher run` at startup (reliability suite).

Kind = Literal["num", "cat"]
Method = Literal["auto", "psi"]
Test = Literal["ks", "chisquare", "wasserstein", "jensenshannon", "psi"]

TESTS: frozenset[str] = frozenset({"ks", "chisquare"})
LOW_CARDINALITY = 5
# Floor for the Wasserstein normaliser and for empty PSI bins (as in Evidently/PSI practice).
MIN_STD = 0.001
PSI_EPSILON = 1e-4


@dataclass(frozen=True, slots=True)
class DriftOptions:
    """How to decide; constructed from the ``[drift]`` config section."""

    method: Method = "auto"
    p_value: float = 0.05
    threshold: float = 0.1
    drift_share: float = 0.5
    max_test_rows: int = 1000
    psi_bins: int = 10

    def __post_init__(self) -> None:
        if self.method not in ("auto", "psi"):
            raise ValueError(f"method: expected 'auto' or 'psi', got {self.method!r}")
        if not 0.0 < self.p_value < 1.0:
            raise ValueError(f"p_value: must be in (0, 1), got {self.p_value}")
        if not self.threshold > 0.0:
            raise ValueError(f"threshold: must be greater than 0, got {self.threshold}")
        if not 0.0 < self.drift_share <= 1.0:
            raise ValueError(f"drift_share: must be in (0, 1], got {self.drift_share}")
        if self.max_test_rows < 0:
            raise ValueError(f"max_test_rows: must be >= 0, got {self.max_test_rows}")
        if self.psi_bins < 2:
            raise ValueError(f"psi_bins: must be >= 2, got {self.psi_bins}")


@dataclass(frozen=True, slots=True)
class ColumnDrift:
    """One column's verdict. ``statistic`` is the test statistic or the distance."""

    name: str
    kind: Kind
    test: Test
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int

    @property
    def score(self) -> float:
        """The number compared with the threshold: p-value for tests, else the distance."""
        return self.p_value if self.p_value is not None else self.statistic

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "test": self.test,
            "statistic": _finite(self.statistic),
            "p_value": None if self.p_value is None else _finite(self.p_value),
            "threshold": self.threshold,
            "drifted": self.drifted,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
        }


@dataclass(frozen=True, slots=True)
class DriftReport:
    """Per-column results and the dataset verdict.

    Reference columns absent from the current data count as drifted (a schema
    change is the largest shift there is); extra current columns are listed only.
    """

    columns: tuple[ColumnDrift, ...]
    drift_share: float
    missing_columns: tuple[str, ...] = ()
    new_columns: tuple[str, ...] = ()
    reference: str = ""
    data_hash: str | None = None
    method: Method = "auto"
    notes: tuple[str, ...] = field(default=())

    @property
    def drifted_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.drifted) + self.missing_columns

    @property
    def share(self) -> float:
        total = len(self.columns) + len(self.missing_columns)
        return len(self.drifted_columns) / total if total else 0.0

    @property
    def dataset_drift(self) -> bool:
        total = len(self.columns) + len(self.missing_columns)
        # Compare counts, not floats: 1 of 2 columns is exactly the default 0.5.
        return total > 0 and len(self.drifted_columns) >= self.drift_share * total - 1e-9

    def column(self, name: str) -> ColumnDrift:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "data_hash": self.data_hash,
            "method": self.method,
            "dataset_drift": self.dataset_drift,
            "share": round(self.share, 6),
            "drift_share": self.drift_share,
            "drifted_columns": list(self.drifted_columns),
            "missing_columns": list(self.missing_columns),
            "new_columns": list(self.new_columns),
            "notes": list(self.notes),
            "columns": [c.to_dict() for c in self.columns],
        }


# Statistics ---------------------------------------------------------------

FloatArray = npt.NDArray[np.float64]


def ks(reference: FloatArray, current: FloatArray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: (D, p-value)."""
    with warnings.catch_warnings():
        # "Exact calculation unsuccessful, switching to asymp": the fallback is the answer.
        warnings.simplefilter("ignore", RuntimeWarning)
        from scipy import stats

        result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def chi_square(reference: npt.ArrayLike, current: npt.ArrayLike) -> tuple[float, float]:
    """Chi-square test of homogeneity on the 2 x k table of category counts: (chi2, p).

    A two-sample test (both samples are noisy), so categories seen in only one
    sample need no special case; no Yates correction, so 2 x 2 tables get the
    same statistic as any other.
    """
    ref_counts, cur_counts = _category_counts(reference, current)
    if len(ref_counts) < 2:
        return 0.0, 1.0
    from scipy import stats

    result = stats.chi2_contingency(np.vstack([ref_counts, cur_counts]), correction=False)
    return float(result.statistic), float(result.pvalue)


def normed_wasserstein(reference: FloatArray, current: FloatArray) -> float:
    """Wasserstein-1 distance in units of the reference standard deviation."""
    from scipy import stats

    norm = max(float(np.std(reference)), MIN_STD)
    return float(stats.wasserstein_distance(reference, current)) / norm


def js_distance(reference: npt.ArrayLike, current: npt.ArrayLike, kind: Kind) -> float:
    """Jensen-Shannon distance (natural log) of the two frequency distributions.

    Numeric columns are binned on Sturges' edges of the pooled sample.
    """
    from scipy.spatial.distance import jensenshannon

    ref_p, cur_p = _frequencies(reference, current, kind)
    return float(jensenshannon(ref_p, cur_p))


def psi(reference: npt.ArrayLike, current: npt.ArrayLike, kind: Kind, bins: int = 10) -> float:
    """Population Stability Index, sum((r - c) * ln(r / c)).

    Numeric columns use the reference's quantile bins (open-ended at both ends, so
    values outside the reference range still land in a bin); empty bins get a
    small floor so the log stays finite.
    """
    if kind == "num":
        ref = np.asarray(reference, dtype=np.float64)
        cur = np.asarray(current, dtype=np.float64)
        edges = np.unique(np.quantile(ref, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
        n_bins = len(edges) + 1
        ref_counts = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=n_bins)
        cur_counts = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=n_bins)
    else:
        ref_counts, cur_counts = _category_counts(reference, current)
    r = np.maximum(ref_counts / ref_counts.sum(), PSI_EPSILON)
    c = np.maximum(cur_counts / cur_counts.sum(), PSI_EPSILON)
    return float(np.sum((r - c) * np.log(r / c)))


def _category_counts(
    reference: npt.ArrayLike, current: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    ref = np.asarray(reference)
    cur = np.asarray(current)
    _, inverse = np.unique(np.concatenate([ref, cur]), return_inverse=True)
    inverse = inverse.ravel()
    size = int(inverse.max()) + 1 if len(inverse) else 0
    ref_counts = np.bincount(inverse[: len(ref)], minlength=size)
    cur_counts = np.bincount(inverse[len(ref) :], minlength=size)
    return ref_counts.astype(np.int64), cur_counts.astype(np.int64)


def _frequencies(
    reference: npt.ArrayLike, current: npt.ArrayLike, kind: Kind
) -> tuple[FloatArray, FloatArray]:
    if kind == "num":
        ref = np.asarray(reference, dtype=np.float64)
        cur = np.asarray(current, dtype=np.float64)
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        ref_counts = np.histogram(ref, edges)[0]
        cur_counts = np.histogram(cur, edges)[0]
    else:
        ref_counts, cur_counts = _category_counts(reference, current)
    return ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()


# Decisions ------------------------------------------------------------------


def column_drift(
    name: str,
    reference: Sequence[Any] | npt.ArrayLike,
    current: Sequence[Any] | npt.ArrayLike,
    kind: Kind,
    options: DriftOptions | None = None,
) -> ColumnDrift:
    """Compare one column. Numeric NaN/inf values are dropped; categorical values compare as str.

    Raises ValueError naming the column when either side has no usable value.
    """
    opts = options or DriftOptions()
    ref: npt.NDArray[Any]
    cur: npt.NDArray[Any]
    if kind == "num":
        ref = _finite_values(reference, name, "reference")
        cur = _finite_values(current, name, "current")
    elif kind == "cat":
        ref = np.asarray([str(v) for v in np.asarray(reference, dtype=object).ravel()], dtype=str)
        cur = np.asarray([str(v) for v in np.asarray(current, dtype=object).ravel()], dtype=str)
    else:
        raise ValueError(f"column {name!r}: kind must be 'num' or 'cat', got {kind!r}")
    for side, values in (("reference", ref), ("current", cur)):
        if len(values) == 0:
            raise ValueError(f"column {name!r}: the {side} sample has no usable values")

    # Few distinct reference values: compare as categories (on the numbers themselves).
    as_kind: Kind = "cat" if kind == "num" and len(np.unique(ref)) <= LOW_CARDINALITY else kind
    test: Test
    p: float | None = None
    if opts.method == "psi":
        test, statistic, threshold = "psi", psi(ref, cur, as_kind, opts.psi_bins), opts.threshold
    elif len(ref) <= opts.max_test_rows:
        threshold = opts.p_value
        if as_kind == "num":
            test = "ks"
            statistic, p = ks(ref, cur)
        else:
            test = "chisquare"
            statistic, p = chi_square(ref, cur)
    elif as_kind == "num":
        test, statistic, threshold = "wasserstein", normed_wasserstein(ref, cur), opts.threshold
    else:
        test, statistic, threshold = "jensenshannon", js_distance(ref, cur, "cat"), opts.threshold
    drifted = p < threshold if p is not None else statistic >= threshold
    return ColumnDrift(
        name=name,
        kind=kind,
        test=test,
        statistic=statistic,
        p_value=p,
        threshold=threshold,
        drifted=bool(drifted),
        reference_rows=len(ref),
        current_rows=len(cur),
    )


def dataset_drift(
    reference: Mapping[str, Sequence[Any] | npt.ArrayLike],
    current: Mapping[str, Sequence[Any] | npt.ArrayLike],
    kinds: Mapping[str, Kind],
    options: DriftOptions | None = None,
    *,
    reference_label: str = "",
    data_hash: str | None = None,
    notes: Sequence[str] = (),
) -> DriftReport:
    """Compare every reference column (in reference order) with the current data."""
    opts = options or DriftOptions()
    columns = tuple(
        column_drift(name, reference[name], current[name], kinds[name], opts)
        for name in reference
        if name in current
    )
    return DriftReport(
        columns=columns,
        drift_share=opts.drift_share,
        missing_columns=tuple(n for n in reference if n not in current),
        new_columns=tuple(n for n in current if n not in reference),
        reference=reference_label,
        data_hash=data_hash,
        method=opts.method,
        notes=tuple(notes),
    )


# Policy and hand-over --------------------------------------------------------


def drift_without_gain(
    report: DriftReport | Mapping[str, Any],
    new_accuracy: float | None,
    prod_accuracy: float | None,
) -> bool:
    """The milestone's rule: the data drifted but the retrained model is no better.

    ``report`` may also be the ``drift`` block of a trigger conf (``conf_fields``),
    which is what survives in the outbox until the run finishes. Unknown
    accuracies (no Production version, a failed run) decide nothing.
    """
    drifted = (
        report.dataset_drift
        if isinstance(report, DriftReport)
        else report.get("dataset_drift") is True
    )
    if not drifted or new_accuracy is None or prod_accuracy is None:
        return False
    return new_accuracy <= prod_accuracy


def conf_fields(report: DriftReport) -> dict[str, Any]:
    """JSON-safe fields for the trigger conf, flat enough to become run tags/metrics."""
    return {
        "drift": {
            "reference": report.reference,
            "data_hash": report.data_hash,
            "method": report.method,
            "dataset_drift": report.dataset_drift,
            "share": round(report.share, 6),
            "drifted_columns": list(report.drifted_columns),
            "missing_columns": list(report.missing_columns),
            "scores": {c.name: _finite(c.score) for c in report.columns},
            "tests": {c.name: c.test for c in report.columns},
        }
    }


def _finite(value: float) -> float | None:
    # JSON has no inf/NaN; None says "not a number" without breaking consumers.
    return value if math.isfinite(value) else None


def _finite_values(values: Sequence[Any] | npt.ArrayLike, name: str, side: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"column {name!r}: {side} sample has non-numeric values") from None
    return arr[np.isfinite(arr)]
