"""Run the benchmarks one after another and collect their JSON rows in one directory.

    uv run python benchmarks/run_all.py [--out DIR] [--full] [--only hashing,poll]

Each benchmark runs as its own process with ``--json OUT/<name>.json``; its output goes
to ``OUT/<name>.txt``. ``OUT/summary.json`` lists what ran, how long it took and its
exit status, and the combined table of every row is printed at the end (and written to
``OUT/all.json``). The default sizes are the quick ones (25 minutes on the shared 2-core
box at load 7 to 10); ``--full`` uses the sizes the README's figures were measured at
(longer; seeding the 1,000-model poll store the first time adds minutes). ``make bench``
runs the quick set into ``bench-results/``.
A benchmark that misses a target or fails does not stop the others; the exit status
is 1 when any did.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from benchmarks.report import Report, Row

REPO = Path(__file__).resolve().parents[1]
FIELDS = {f.name for f in fields(Row)}
# name: (quick arguments, full arguments); run in this order.
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "cli_startup": (["--runs", "7"], ["--runs", "11"]),
    "hashing": (["--runs", "5"], ["--runs", "7"]),
    "stop_latency": (["--idle-runs", "7", "--signals", "8"], ["--idle-runs", "9"]),
    "rollback": (["--trials", "5"], ["--trials", "5"]),
    "poll": (["--models", "300", "--repeat", "3"], ["--models", "1000", "--repeat", "5"]),
    "dag_parse": (["--runs", "3"], ["--runs", "5"]),
    "load": (["--files", "20000", "--events", "10000"], []),
    "soak": (["--minutes", "3"], ["--minutes", "5"]),
    "lean_install": (["--runs", "1", "--settle", "5"], ["--runs", "3"]),
}


def run_one(name: str, argv: list[str], out: Path) -> dict[str, Any]:
    json_path = out / f"{name}.json"
    json_path.unlink(missing_ok=True)
    cmd = [sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *argv, "--json", str(json_path)]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    started = time.monotonic()
    with (out / f"{name}.txt").open("w", encoding="utf-8") as log:
        code = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False)
    seconds = time.monotonic() - started
    print(f"   exit {code.returncode} after {seconds:.0f} s", flush=True)
    return {
        "name": name,
        "argv": argv,
        "seconds": round(seconds, 1),
        "exit": code.returncode,
        "json": json_path.name if json_path.exists() else None,
    }


def combined(out: Path, ran: list[dict[str, Any]]) -> Report:
    """Every row of every benchmark that wrote its JSON, names prefixed by the benchmark."""
    report = Report("all")
    for entry in ran:
        if entry["json"] is None:
            continue
        doc = json.loads((out / entry["json"]).read_text(encoding="utf-8"))
        rows = doc.get("rows", [])
        if not all(isinstance(r, dict) and r.keys() == FIELDS for r in rows):
            print(f"{entry['name']}: rows not in the shared format, left out of the table")
            continue
        for row in rows:
            report.rows.append(Row(**{**row, "name": f"{entry['name']}.{row['name']}"}))
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--full", action="store_true", help="the README's sizes (slower)")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    args = parser.parse_args()
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(only) - BENCHMARKS.keys())
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {', '.join(unknown)}")
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    ran = [
        run_one(name, sizes[1 if args.full else 0], args.out)
        for name, sizes in BENCHMARKS.items()
        if not only or name in only
    ]
    total = time.monotonic() - started
    summary = {"full": args.full, "total_seconds": round(total, 1), "benchmarks": ran}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    report = combined(args.out, ran)
    report.finish(args.out / "all.json")
    failed = [e["name"] for e in ran if e["exit"] != 0]
    print(f"{len(ran)} benchmarks in {total / 60:.1f} min into {args.out}", end="")
    print(f"; missed or failed: {', '.join(failed)}" if failed else "; every target met")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
