"""train_pipeline: preprocess -> train -> register -> validate (thin; logic in pipeline/).

Run conf: ``data_dir``, ``data_hash`` and any ``pipeline.config.RunConfig`` field;
missing fields default from ``WATCHER_*`` env vars (a hand-triggered run).
Top-level imports stay light so parsing is cheap: mlflow/sklearn load inside tasks.
Tests shorten retries with WATCHER_DAG_RETRIES / WATCHER_DAG_RETRY_DELAY_SECONDS.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import dag, get_current_context, task

from pipeline.callbacks import on_failure

DEFAULT_RETRIES = 2
DEFAULT_RETRY_DELAY = timedelta(minutes=5)


def _retry_settings() -> tuple[int, timedelta]:
    retries = int(os.environ.get("WATCHER_DAG_RETRIES", DEFAULT_RETRIES))
    delay = os.environ.get("WATCHER_DAG_RETRY_DELAY_SECONDS")
    return retries, timedelta(seconds=float(delay)) if delay else DEFAULT_RETRY_DELAY


_RETRIES, _RETRY_DELAY = _retry_settings()

default_args: dict[str, Any] = {
    "owner": "registry-watcher",
    "retries": _RETRIES,
    "retry_delay": _RETRY_DELAY,
    "on_failure_callback": on_failure,
}


def _fail_fast(exc: Exception) -> Exception:
    """Bad data, bad conf and a failed gate are deterministic: fail without retrying."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline.errors import BadInputError, DataValidationError
    from pipeline.steps import GateFailedError

    if isinstance(exc, DataValidationError | BadInputError | GateFailedError):
        return AirflowFailException(f"{type(exc).__name__}: {exc}")
    return exc


@dag(
    dag_id="train_pipeline",
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["registry-watcher"],
    doc_md=__doc__,
)
def train_pipeline() -> None:
    @task
    def preprocess() -> dict[str, Any]:
        from pipeline import steps
        from pipeline.config import from_conf

        ctx = get_current_context()
        dag_run = ctx["dag_run"]
        conf = dict(dag_run.conf or {})
        conf.setdefault("dag_run_id", dag_run.run_id)
        try:
            return steps.preprocess(from_conf(conf))
        except Exception as exc:
            raise _fail_fast(exc) from exc

    @task
    def train(state: dict[str, Any]) -> dict[str, Any]:
        from pipeline import steps

        try:
            return steps.train(state)
        except Exception as exc:
            raise _fail_fast(exc) from exc

    @task
    def register(state: dict[str, Any]) -> dict[str, Any]:
        from pipeline import steps

        try:
            return steps.register(state)
        except Exception as exc:
            raise _fail_fast(exc) from exc

    @task
    def validate(state: dict[str, Any]) -> dict[str, Any]:
        from pipeline import steps

        try:
            return steps.summary(steps.validate(state))
        except Exception as exc:
            raise _fail_fast(exc) from exc

    # Task SDK calls return XComArgs that Airflow resolves to the upstream dicts at run time.
    validate(register(train(preprocess())))  # type: ignore[arg-type]


train_pipeline()
