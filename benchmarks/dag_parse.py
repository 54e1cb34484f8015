"""How long Airflow takes to parse dags/train_pipeline.py (DagBag), in fresh processes.

Each run is `tests/pipeline/dag_runner.py bag` in a child with its own AIRFLOW_HOME, so
Airflow's import and config cost is outside the measured parse. Anchor, alternating with
it in fresh processes the same way: a one-task DAG file (the least any DAG file costs).
Target: < 1 s per parse (Airflow's dag processor re-parses every file every 30 s by
default). Rows (``benchmarks/report.py``, ``--json PATH``): the median and maximum of
--runs; also prints which packages the parse imported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.report import Report, add_json_arg

REPO = Path(__file__).resolve().parents[1]
RUNNER = REPO / "tests" / "pipeline" / "dag_runner.py"
TARGET_S = 1.0
MINIMAL_DAG = (
    "from airflow.sdk import DAG, task\n"
    "with DAG('minimal', schedule=None):\n"
    "    @task\n"
    "    def noop() -> None: ...\n"
    "    noop()\n"
)
# Parses one folder with a fresh DagBag; prints each file's parse seconds.
PARSE_FOLDER = (
    "import json, sys\n"
    "from pathlib import Path\n"
    "from airflow.dag_processing.dagbag import DagBag\n"
    "bag = DagBag(dag_folder=sys.argv[1])\n"
    "assert not bag.import_errors, bag.import_errors\n"
    "print('RESULT ' + json.dumps({Path(s.file).name: s.duration.total_seconds()"
    " for s in bag.dagbag_stats}))\n"
)


def _env(home: Path, dags: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WATCHER_"))}
    return env | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "PYTHONPATH": str(REPO),
        "MLFLOW_CONFIGURE_LOGGING": "false",
    }


def _result(argv: list[str], env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in reversed(out.splitlines()) if ln.startswith("RESULT "))
    facts: dict[str, object] = json.loads(line.removeprefix("RESULT "))
    return facts


def parse_once(home: Path) -> dict[str, object]:
    return _result([sys.executable, str(RUNNER), "bag"], _env(home, REPO / "dags"))


def parse_minimal(home: Path) -> float:
    dags = home / "dags"
    dags.mkdir(parents=True)
    (dags / "minimal.py").write_text(MINIMAL_DAG, encoding="utf-8")
    facts = _result([sys.executable, "-c", PARSE_FOLDER, str(dags)], _env(home, dags))
    return float(facts["minimal.py"])  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    add_json_arg(parser)
    args = parser.parse_args()
    report = Report("dag_parse", vars(args))
    seconds: list[float] = []
    minimal: list[float] = []
    imported: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dag-parse-") as tmp:
        for i in range(args.runs):
            minimal.append(parse_minimal(Path(tmp) / f"minimal-{i}"))
            home = Path(tmp) / str(i)
            home.mkdir()
            facts = parse_once(home)
            files = facts["file_seconds"]
            assert isinstance(files, dict)
            seconds.append(float(files["train_pipeline.py"]))
            imported = list(facts["parse_imported"])  # type: ignore[call-overload]
    print(f"packages the parse of train_pipeline.py imported: {', '.join(imported)}")
    anchor = statistics.median(minimal)
    one_task = "one-task DAG file"
    report.add(
        "dag-parse-median", statistics.median(seconds), "s", anchor_name=one_task, anchor=anchor
    )
    report.add(
        "dag-parse-max",
        max(seconds),
        "s",
        anchor_name=one_task,
        anchor=anchor,
        target=f"< {TARGET_S:g} s",
        met=max(seconds) < TARGET_S,
    )
    return report.finish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
