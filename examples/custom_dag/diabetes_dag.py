"""diabetes_regression: a team's own DAG, triggered by registry-watcher.

Point the watcher at it with ``trigger.dag_id = "diabetes_regression"`` (see
``watcher.toml`` here). One task runs the team's training function
(``diabetes_model.run``, next to this file in the dags folder); the contract it keeps
is docs/contract.md. Top-level imports stay light: the dag-processor parses this often.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import dag, get_current_context, task

from pipeline.callbacks import on_failure


@dag(
    dag_id="diabetes_regression",
    schedule=None,  # triggered by the watcher, once per dataset hash
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "diabetes-team", "retries": 0, "on_failure_callback": on_failure},
    tags=["registry-watcher", "example"],
    doc_md=__doc__,
)
def diabetes_regression() -> None:
    @task
    def train_and_register() -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException
        from diabetes_model import run  # type: ignore[import-not-found]

        from pipeline.errors import BadInputError, DataValidationError

        dag_run = get_current_context()["dag_run"]
        try:
            summary: dict[str, Any] = run(dict(dag_run.conf or {}), dag_run.run_id)
        except (BadInputError, DataValidationError) as exc:  # deterministic: no retry
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        return summary

    train_and_register()


diabetes_regression()
