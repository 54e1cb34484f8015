"""A team's own model factory, as ``pipeline.estimator = "tests.pipeline.models:scaled_ridge"``
would name it: a preprocessing pipeline the pipeline builds from ``pipeline.params``."""

from __future__ import annotations

from typing import Any


def scaled_ridge(alpha: float = 1.0) -> Any:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=alpha))


def diabetes_csv(out_dir: Any) -> Any:
    """scikit-learn's diabetes dataset (442 rows, regression) as ``out_dir/diabetes.csv``."""
    from pathlib import Path

    from sklearn.datasets import load_diabetes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    load_diabetes(as_frame=True).frame.to_csv(out / "diabetes.csv", index=False)
    return out
