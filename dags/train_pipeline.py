"""train_pipeline: preprocess -> train -> register -> validate (thin; logic in pipeline/).

Run conf: ``data_dir``, ``data_hash`` and any ``pipeline.config.RunConfig`` field;
missing fields default from ``WATCHER_*`` env vars (a hand-triggered run).
Top-level imports stay light so parsing is cheap: mlflow/sklearn load inside tasks.
Tests shorten retries with WATCHER_DAG_RETRIES / WATCHER_DAG_RETRY_DELAY_SECONDS.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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


def _guarded(step: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one pipeline step. Bad data, bad conf and a failed gate are deterministic:
    they fail the task without retrying; anything else (MLflow down) is retried."""
    from airflow.sdk.exceptions import AirflowFailException

    from pipeline.errors import BadInputError, DataValidationError
    from pipeline.steps import GateFailedError

    try:
        return step()
    except (DataValidationError, BadInputError, GateFailedError) as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


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

        dag_run = get_current_context()["dag_run"]
        conf = dict(dag_run.conf or {})
        conf.setdefault("dag_run_id", dag_run.run_id)
        return _guarded(lambda: steps.preprocess(from_conf(conf)))

    @task
    def train(state: dict[str, Any]) -> dict[str, Any]:
        from pipeline import steps

        return _guarded(lambda: steps.train(state))

    @task
    def register(state: dict[str, Any]) -> dict[str, Any]:
        from pipeline import steps

        return _guarded(lambda: steps.register(state))

    @task
    def validate(state: dict[str, Any]) -> dict[str, Any]:
        from pipeline import steps

        return _guarded(lambda: steps.summary(steps.validate(state)))

    # Task SDK calls return XComArgs that Airflow resolves to the upstream dicts at run time.
    validate(register(train(preprocess())))  # type: ignore[arg-type]


train_pipeline()
