"""A stand-in DAG for trigger-protocol tests: two tasks that echo the run conf.

It does not touch MLflow, so trigger tests depend only on Airflow; no assertion about
training rests on it (tests/e2e runs the real ``train_pipeline``, in the same Airflow,
hence the different dag_id). Parsed by the dag-processor from a copy in a temporary
dags folder, never imported by tests.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, get_current_context, task


# max_active_runs=1 as in dags/train_pipeline.py: queued runs go one at a time, in order.
@dag(dag_id="stand_in_pipeline", schedule=None, catchup=False, max_active_runs=1, tags=["test"])
def stand_in_pipeline() -> None:
    @task
    def echo_conf() -> dict[str, Any]:
        conf = dict(get_current_context()["dag_run"].conf or {})
        print(f"conf={conf}")  # visible in the task log
        return conf

    @task
    def done() -> str:
        return str((get_current_context()["dag_run"].conf or {}).get("data_hash", ""))

    echo_conf() >> done()


stand_in_pipeline()
