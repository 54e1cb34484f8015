"""Reference profile: what a model version was trained on, kept next to its run.

Written at training time as the MLflow artifact ``reference_profile.json``:
per-column statistics plus a bounded, seeded random sample (at most 5,000 rows
and 500,000 cells), so drift against the Production version's training data can
be computed later without rereading old data. Versions trained before profiles
existed simply have none: ``load_profile`` returns None.

Also here: the pipeline side of drift, turning the ``drift`` block of a
trigger's conf into tags and metrics on the training run.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipeline.errors import BackendError, BadInputError, PipelineError

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from pipeline.data import Dataset

PROFILE_ARTIFACT = "reference_profile.json"
SCHEMA = 1
MAX_SAMPLE_ROWS = 5_000
MAX_SAMPLE_CELLS = 500_000
MAX_TOP_CATEGORIES = 100
# Category values are cut to this length in the sample and the counts; compare
# current data through ``category_value`` so both sides are cut alike.
MAX_VALUE_CHARS = 200
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

Kind = Literal["num", "cat"]
Role = Literal["feature", "target"]


class ProfileError(PipelineError, ValueError):
    """A profile that cannot be built, logged or parsed."""


def category_value(value: object) -> str:
    """The canonical text of a categorical value, as stored in profiles."""
    return str(value)[:MAX_VALUE_CHARS]


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """Statistics of one column over all rows (not just the sample)."""

    name: str
    kind: Kind
    role: Role
    count: int
    missing: int
    n_unique: int
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    quantiles: Mapping[str, float] | None = None
    top: Mapping[str, int] | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """A reference profile; ``sample`` is column-major, ``sample_rows`` values each."""

    columns: tuple[ColumnProfile, ...]
    sample: Mapping[str, tuple[Any, ...]]
    n_rows: int
    sample_rows: int
    target: str | None
    seed: int
    data_hash: str | None = None
    created_at: str = ""
    schema: int = SCHEMA

    @property
    def kinds(self) -> dict[str, Kind]:
        return {c.name: c.kind for c in self.columns}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "created_at": self.created_at,
            "data_hash": self.data_hash,
            "target": self.target,
            "n_rows": self.n_rows,
            "sample_rows": self.sample_rows,
            "seed": self.seed,
            "columns": [_column_dict(c) for c in self.columns],
            "sample": {name: list(values) for name, values in self.sample.items()},
        }

    def to_json(self) -> str:
        # allow_nan=False: NaN was already stored as null; anything else is a bug.
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str, *, source: str = PROFILE_ARTIFACT) -> Profile:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{source}: not JSON: {exc}") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = PROFILE_ARTIFACT) -> Profile:
        if not isinstance(data, dict):
            raise ProfileError(f"{source}: expected a JSON object")
        schema = data.get("schema")
        if schema != SCHEMA:
            raise ProfileError(f"{source}: unsupported profile schema {schema!r} (want {SCHEMA})")
        try:
            columns = tuple(_column_from(c) for c in data["columns"])
            sample = {str(k): tuple(v) for k, v in data["sample"].items()}
            profile = cls(
                columns=columns,
                sample=sample,
                n_rows=int(data["n_rows"]),
                sample_rows=int(data["sample_rows"]),
                target=data.get("target"),
                seed=int(data.get("seed", 0)),
                data_hash=data.get("data_hash"),
                created_at=str(data.get("created_at", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(
                f"{source}: malformed profile ({type(exc).__name__}: {exc})"
            ) from None
        for col in columns:
            values = sample.get(col.name)
            if values is None or len(values) != profile.sample_rows:
                raise ProfileError(
                    f"{source}: column {col.name!r}: sample has "
                    f"{'no values' if values is None else len(values)} "
                    f"(expected {profile.sample_rows})"
                )
        return profile


def _column_dict(c: ColumnProfile) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": c.name,
        "kind": c.kind,
        "role": c.role,
        "count": c.count,
        "missing": c.missing,
        "n_unique": c.n_unique,
    }
    if c.kind == "num":
        out |= {
            "mean": c.mean,
            "std": c.std,
            "min": c.min,
            "max": c.max,
            "quantiles": dict(c.quantiles or {}),
        }
    else:
        out["top"] = dict(c.top or {})
    return out


def _column_from(d: Mapping[str, Any]) -> ColumnProfile:
    kind = d["kind"]
    role = d.get("role", "feature")
    if kind not in ("num", "cat") or role not in ("feature", "target"):
        raise ValueError(f"column {d.get('name')!r}: bad kind {kind!r} or role {role!r}")
    return ColumnProfile(
        name=str(d["name"]),
        kind=kind,
        role=role,
        count=int(d["count"]),
        missing=int(d.get("missing", 0)),
        n_unique=int(d.get("n_unique", 0)),
        mean=d.get("mean"),
        std=d.get("std"),
        min=d.get("min"),
        max=d.get("max"),
        quantiles=d.get("quantiles"),
        top=d.get("top"),
    )


# Building -------------------------------------------------------------------


def build_profile(
    df: pd.DataFrame,
    target: str | None,
    *,
    data_hash: str | None = None,
    max_rows: int = MAX_SAMPLE_ROWS,
    max_cells: int = MAX_SAMPLE_CELLS,
    seed: int = 0,
    now: datetime | None = None,
) -> Profile:
    """Profile ``df`` (features and, if named, the target, which is categorical).

    Numeric (non-boolean) columns are ``num``; everything else, and the target, ``cat``.
    """
    import numpy as np
    import pandas as pd

    if target is not None and target not in df.columns:
        raise ProfileError(f"target column {target!r} not in the data")
    if df.shape[1] == 0 or df.shape[0] == 0:
        raise ProfileError(f"cannot profile an empty table ({df.shape[0]} rows x {df.shape[1]})")
    if max_rows < 1 or max_cells < 1:
        raise ProfileError("max_rows and max_cells must be at least 1")
    names = [str(c) for c in df.columns]
    if len(set(names)) != len(names):
        raise ProfileError("duplicate column names")

    n = int(df.shape[0])
    k = max(1, min(n, max_rows, max_cells // len(names)))
    index = (
        np.arange(n)
        if k == n
        else np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    )

    columns: list[ColumnProfile] = []
    sample: dict[str, tuple[Any, ...]] = {}
    for raw, name in zip(df.columns, names, strict=True):
        series = df[raw]
        is_num = (
            name != target
            and pd.api.types.is_numeric_dtype(series.dtype)
            and not pd.api.types.is_bool_dtype(series.dtype)
        )
        role: Role = "target" if name == target else "feature"
        if is_num:
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            finite = values[np.isfinite(values)]
            columns.append(_numeric_stats(name, role, values, finite))
            sample[name] = tuple(_json_float(v) for v in values[index])
        else:
            present = series[series.notna()]
            text = [category_value(v) for v in present]
            counts = pd.Series(text, dtype=object).value_counts()
            top = {str(c): int(v) for c, v in counts.iloc[:MAX_TOP_CATEGORIES].items()}
            columns.append(
                ColumnProfile(
                    name=name,
                    kind="cat",
                    role=role,
                    count=len(text),
                    missing=n - len(text),
                    n_unique=len(counts),
                    top=top,
                )
            )
            picked = series.iloc[index]
            sample[name] = tuple(None if pd.isna(v) else category_value(v) for v in picked)

    stamp = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    return Profile(
        columns=tuple(columns),
        sample=sample,
        n_rows=n,
        sample_rows=k,
        target=target,
        seed=seed,
        data_hash=data_hash,
        created_at=stamp,
    )


def profile_from_dataset(dataset: Dataset, **kwargs: Any) -> Profile:
    """The profile of a loaded training dataset (features + target), tagged with its hash."""
    import pandas as pd

    frame = pd.concat([dataset.features, dataset.target.rename(dataset.target_name)], axis=1)
    return build_profile(frame, dataset.target_name, data_hash=dataset.data_hash, **kwargs)


def _numeric_stats(name: str, role: Role, values: Any, finite: Any) -> ColumnProfile:
    import numpy as np

    if len(finite) == 0:
        return ColumnProfile(name, "num", role, 0, len(values), 0)
    qs = np.quantile(finite, QUANTILES)
    return ColumnProfile(
        name=name,
        kind="num",
        role=role,
        count=len(finite),
        missing=len(values) - len(finite),
        n_unique=len(np.unique(finite)),
        mean=float(np.mean(finite)),
        std=float(np.std(finite)),
        min=float(np.min(finite)),
        max=float(np.max(finite)),
        quantiles={f"p{round(q * 100):02d}": float(v) for q, v in zip(QUANTILES, qs, strict=True)},
    )


def _json_float(v: Any) -> float | None:
    f = float(v)
    return f if math.isfinite(f) else None


# MLflow ---------------------------------------------------------------------


def log_profile(profile: Profile) -> None:
    """Log ``profile`` as ``reference_profile.json`` in the active MLflow run."""
    import mlflow

    if mlflow.active_run() is None:
        raise ProfileError("log_profile needs an active MLflow run")
    mlflow.log_text(profile.to_json(), PROFILE_ARTIFACT)


def load_run_profile(client: MlflowClient, run_id: str) -> Profile | None:
    """The profile logged in run ``run_id``, or None when the run has none."""
    from pipeline.tracking import translate

    try:
        names = {a.path for a in client.list_artifacts(run_id)}
        if PROFILE_ARTIFACT not in names:
            return None
        with tempfile.TemporaryDirectory(prefix="watcher-profile-") as tmp:
            path = client.download_artifacts(run_id, PROFILE_ARTIFACT, tmp)
            text = Path(path).read_text(encoding="utf-8")
    except (PipelineError, OSError) as exc:
        raise BackendError(f"run {run_id}: cannot read {PROFILE_ARTIFACT}: {exc}") from exc
    except Exception as exc:  # MlflowException and transport errors, mapped at the edge
        raise translate(exc, f"run {run_id}") from exc
    return Profile.from_json(text, source=f"run {run_id}/{PROFILE_ARTIFACT}")


def load_profile(client: MlflowClient, model: str, version: str | int) -> Profile | None:
    """The reference profile of ``model`` version ``version``; None for versions without one.

    Raises BadInputError for an unknown model/version, BackendError when MLflow fails.
    """
    from pipeline.tracking import translate

    try:
        mv = client.get_model_version(model, str(version))
    except Exception as exc:
        raise translate(exc, f"model {model!r} version {version}") from exc
    run_id = getattr(mv, "run_id", None)
    if not run_id:
        return None
    return load_run_profile(client, str(run_id))


# Drift results on the training run -------------------------------------------------

_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-. /]")


def drift_tags_and_metrics(drift: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, float]]:
    """Tags and metrics for a training run from the trigger conf's ``drift`` block.

    Tags: ``drift.dataset_drift``, ``drift.share``, ``drift.columns`` (drifted,
    comma-separated), ``drift.reference``; metrics: ``drift_share`` and one
    ``drift.<column>`` score each (p-value for tests, distance otherwise).
    """
    if not isinstance(drift, Mapping):
        raise BadInputError("conf drift: expected an object")
    tags = {
        "drift.dataset_drift": str(bool(drift.get("dataset_drift"))).lower(),
        "drift.share": str(drift.get("share", "")),
        "drift.columns": ",".join(str(c) for c in drift.get("drifted_columns", [])),
        "drift.reference": str(drift.get("reference", "")),
        "drift.method": str(drift.get("method", "")),
    }
    metrics: dict[str, float] = {}
    share = drift.get("share")
    if isinstance(share, int | float):
        metrics["drift_share"] = float(share)
    scores = drift.get("scores") or {}
    if isinstance(scores, Mapping):
        for name, score in scores.items():
            if isinstance(score, int | float) and math.isfinite(score):
                metrics["drift." + _METRIC_NAME.sub("_", str(name))[:200]] = float(score)
    return tags, metrics


def log_drift(drift: Mapping[str, Any]) -> None:
    """Log the trigger conf's ``drift`` block on the active MLflow run."""
    import mlflow

    if mlflow.active_run() is None:
        raise ProfileError("log_drift needs an active MLflow run")
    tags, metrics = drift_tags_and_metrics(drift)
    mlflow.set_tags(tags)
    if metrics:
        mlflow.log_metrics(metrics)
