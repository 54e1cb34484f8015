"""Run Airflow in a child process so its import-time config never leaks into pytest.

    python tests/pipeline/dag_runner.py bag             -> JSON: import errors, DAG facts
    python tests/pipeline/dag_runner.py test CONF.json  -> JSON per conf: dag.test() outcome

The caller sets AIRFLOW_HOME, AIRFLOW__CORE__DAGS_FOLDER, the database URL,
MLFLOW_TRACKING_URI and the WATCHER_DAG_* overrides in the environment.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def _callbacks(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else [value]
    return [f"{cb.__module__}.{cb.__qualname__}" for cb in items if cb is not None]


def bag() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    folder = Path(__file__).resolve().parents[2] / "dags"
    before = set(sys.modules)
    started = time.monotonic()
    dagbag = DagBag(dag_folder=str(folder))
    elapsed = time.monotonic() - started
    dag = dagbag.dags.get("train_pipeline")
    facts: dict[str, Any] = {
        "import_errors": {str(k): str(v) for k, v in dagbag.import_errors.items()},
        "dag_ids": sorted(dagbag.dags),
        "bag_seconds": elapsed,
        # Top-level packages that parsing the DAG folder imported (what makes a parse slow).
        "parse_imported": sorted({m.split(".")[0] for m in set(sys.modules) - before}),
        "file_seconds": {
            Path(s.file).name: s.duration.total_seconds() for s in dagbag.dagbag_stats
        },
    }
    if dag is not None:
        facts["tasks"] = {
            t.task_id: {
                "downstream": sorted(t.downstream_task_ids),
                "retries": t.retries,
                "retry_delay": t.retry_delay.total_seconds(),
                "on_failure_callback": _callbacks(t.on_failure_callback),
            }
            for t in dag.tasks
        }
        facts["schedule"] = repr(dag.schedule)
        facts["catchup"] = dag.catchup
        facts["start_date_tz"] = str(getattr(dag.start_date, "tzinfo", None))
    return facts


def test(confs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from airflow.dag_processing.dagbag import DagBag

    folder = Path(__file__).resolve().parents[2] / "dags"
    dag = DagBag(dag_folder=str(folder)).dags["train_pipeline"]
    results = []
    for conf in confs:
        dr = dag.test(run_conf=conf)
        results.append(
            {
                "state": str(dr.state),
                "run_id": dr.run_id,
                "tasks": {ti.task_id: str(ti.state) for ti in dr.get_task_instances()},
            }
        )
    return results


if __name__ == "__main__":
    out = bag() if sys.argv[1] == "bag" else test(json.loads(Path(sys.argv[2]).read_text()))
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")
