"""How long Airflow takes to parse dags/train_pipeline.py (DagBag), in fresh processes.

Each run is `tests/pipeline/dag_runner.py bag` in a child with its own AIRFLOW_HOME, so
Airflow's import and config cost is outside the measured parse. Target: < 1 s per parse
(Airflow's dag processor re-parses every file every 30 s by default). Prints the median
and maximum of N runs and which packages the parse imported.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "pipeline" / "dag_runner.py"
RUNS = 5


def parse_once(home: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WATCHER_"))}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PYTHONPATH": str(REPO),
        "MLFLOW_CONFIGURE_LOGGING": "false",
    }
    out = subprocess.run(
        [sys.executable, str(RUNNER), "bag"], env=env, capture_output=True, text=True, check=True
    ).stdout
    line = next(ln for ln in reversed(out.splitlines()) if ln.startswith("RESULT "))
    facts: dict[str, object] = json.loads(line.removeprefix("RESULT "))
    return facts


def main() -> None:
    seconds: list[float] = []
    imported: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dag-parse-") as tmp:
        for i in range(RUNS):
            home = Path(tmp) / str(i)
            home.mkdir()
            facts = parse_once(home)
            files = facts["file_seconds"]
            assert isinstance(files, dict)
            seconds.append(float(files["train_pipeline.py"]))
            imported = list(facts["parse_imported"])  # type: ignore[call-overload]
    median, worst = statistics.median(seconds), max(seconds)
    print(f"DagBag parse of train_pipeline.py over {RUNS} fresh processes:")
    print(f"  median {median * 1000:.0f} ms, max {worst * 1000:.0f} ms (target < 1000 ms)")
    print(f"  packages the parse imported: {', '.join(imported)}")
    print(f"target < 1 s: {'met' if worst < 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
