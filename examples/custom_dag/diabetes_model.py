"""The team's own training function for ``diabetes_regression`` (no ``pipeline.train``):
a scaled Ridge regression on scikit-learn's diabetes dataset, kept to the watcher's
contract with the helpers of ``pipeline.api`` (docs/contract.md).

    python examples/custom_dag/diabetes_model.py write-data DATA_DIR [--rows N]

writes the dataset as ``DATA_DIR/diabetes.csv`` (10 features and ``target``) to try it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

from pipeline import api

TASK: Final = "regression"


def write_data(out_dir: Path | str, rows: int | None = None) -> Path:
    """scikit-learn's diabetes dataset (442 rows; the first ``rows`` of them) as a CSV."""
    from sklearn.datasets import load_diabetes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = load_diabetes(as_frame=True).frame
    path = out / "diabetes.csv"
    tmp = out / ".diabetes.csv.tmp"  # dot-files are ignored by the watcher: an atomic swap
    frame.head(rows or len(frame)).to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def _load(cfg: api.RunConfig) -> Any:
    import pandas as pd

    files = sorted(Path(cfg.data_dir).glob("*.csv"))
    if not files:
        raise api.BadInputError(f"{cfg.data_dir}: no CSV files")
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def run(conf: dict[str, Any], dag_run_id: str | None = None) -> dict[str, Any]:
    """One triggered run: verify the data, train, log with lineage, register and promote
    through the gate. Returns a summary (the task's XCom)."""
    import mlflow
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cfg = api.read_conf(conf, dag_run_id=dag_run_id)  # the watcher's settings, typed
    data_hash = api.verify_data(cfg)  # refuse data that changed since the trigger
    frame = _load(cfg)
    x, y = frame.drop(columns=[cfg.target]), frame[cfg.target].astype(float)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=cfg.test_size, random_state=cfg.random_state
    )
    alpha = float(cfg.params.get("alpha", 1.0))
    model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x_train, y_train)
    metrics = api.score(TASK, y_test, model.predict(x_test))

    api.tracking_client(cfg)
    mlflow.set_experiment(cfg.experiment)
    with mlflow.start_run() as mlrun:
        api.tag_run(cfg, data_hash)
        mlflow.log_params({"model": "StandardScaler+Ridge", "alpha": alpha, "task": TASK})
        mlflow.log_metrics(metrics)
        info = api.log_model(model, x_train)  # signature, input example, requirements
    result = api.register(
        cfg,
        data_hash=data_hash,
        run_id=mlrun.info.run_id,
        model_uri=info.model_uri,
        model_id=getattr(info, "model_id", None),
        metrics=metrics,
        x_test=x_test,
        y_test=y_test,
    )
    return {"run_id": mlrun.info.run_id, "version": result.version, **metrics,
            "promoted": result.promoted, "reason": result.reason}  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "write-data":
        sys.exit(__doc__)
    rows = int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--rows" else None
    print(write_data(sys.argv[2], rows))
