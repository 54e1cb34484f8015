"""`watcher run` start-up: time to READY=1, time to the first registry poll, steady RSS.

    python benchmarks/start.py [--runs 3] [--settle 10] [--tracking-uri URI] [--json PATH]

Each run starts `watcher run` in a fresh dir under a fake systemd (its own
$NOTIFY_SOCKET), on embedded defaults (MLflow on SQLite in the state dir, as `make run`)
unless ``--tracking-uri`` names a server, with a one-file data dir. Figures, medians:

- ``ready_s``: exec → the READY=1 datagram (the `ready` line is logged at once after it).
- ``first_poll_s``: exec → the first registry poll's outcome in the log
  (`registry_first_poll`, or `mlflow_unreachable`). READY=1 follows it (#17 goal 5).
- ``rss_ready_mib`` at READY=1 and ``rss_steady_mib`` ``--settle`` seconds later (polls
  every 2 s meanwhile).

Anchors measured in the same run, alternating with the starts: ``python -c "import
mlflow"`` (its wall time and peak RSS: what any MLflow client costs, since importing any
part of mlflow runs its top-level package) and ``python -c pass``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.report import Report, add_json_arg

WATCHER = str(Path(sys.executable).parent / "watcher")
IMPORT_MLFLOW = "import resource, mlflow; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
FIRST_POLL = ("registry_first_poll", "mlflow_unreachable")


def _rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    kib = int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1])
    return kib / 1024


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in log.read_text().splitlines() if ln.startswith("{")]


def one_start(
    root: Path,
    settle: float,
    tracking_uri: str | None,
    *,
    watcher: str = WATCHER,
    drift: bool = True,
) -> dict[str, float]:
    """One start of ``watcher`` (another venv's too); ``drift``: set drift.alert = false
    (a lean install refuses drift keys: it has no drift checks)."""
    (root / "data").mkdir()
    (root / "data" / "a.csv").write_text("x,y\n1,2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHER_", "MLFLOW_"))}
    env.update(
        {
            "WATCHER_MONITOR__POLL_INTERVAL": "2",
            "WATCHER_TRIGGER__BACKEND": "command",  # no training run: start-up only
            "WATCHER_TRIGGER__COMMAND": json.dumps(["true"]),
        }
    )
    if drift:
        env["WATCHER_DRIFT__ALERT"] = "false"
    if tracking_uri:
        env["WATCHER_MLFLOW__TRACKING_URI"] = tracking_uri
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(root / "notify.sock"))
    env["NOTIFY_SOCKET"] = str(root / "notify.sock")
    log = root / "watcher.log"
    with log.open("w") as out:
        wall0, t0 = time.time(), time.perf_counter()
        proc = subprocess.Popen(
            [watcher, "--log-format", "json", "run"], cwd=root, env=env, stdout=out, stderr=out
        )
        try:
            sock.settimeout(300)
            while b"READY=1" not in sock.recv(4096):
                pass
            ready = time.perf_counter() - t0
            rss_ready = _rss_mib(proc.pid)
            time.sleep(settle)  # a benchmark, not a test: polls every 2 s meanwhile
            rss_steady = _rss_mib(proc.pid)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            proc.kill()
            sock.close()
    polled = next(e for e in _events(log) if e.get("event") in FIRST_POLL)
    at = datetime.fromisoformat(str(polled["timestamp"]).replace("Z", "+00:00")).timestamp()
    return {
        "ready_s": ready,
        "first_poll_s": at - wall0,
        "rss_ready_mib": rss_ready,
        "rss_steady_mib": rss_steady,
    }


def import_mlflow() -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a bare `import mlflow`."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_MLFLOW], check=True, capture_output=True, text=True
    )
    return time.perf_counter() - t0, int(out.stdout.strip()) / 1024


def python_pass() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--tracking-uri", help="An MLflow server (default: embedded SQLite).")
    add_json_arg(parser)
    args = parser.parse_args()
    report = Report("start", vars(args))
    samples: dict[str, list[float]] = {}
    import_mlflow()  # warm the page cache
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            for key, value in one_start(Path(tmp), args.settle, args.tracking_uri).items():
                samples.setdefault(key, []).append(value)
        seconds, rss = import_mlflow()
        samples.setdefault("import_mlflow_s", []).append(seconds)
        samples.setdefault("import_mlflow_rss_mib", []).append(rss)
        samples.setdefault("python_pass_s", []).append(python_pass())
    med = {k: statistics.median(v) for k, v in samples.items()}
    report.add("python -c pass", med["python_pass_s"], "s")
    for label, key, anchor, unit in (
        ("time to READY=1", "ready_s", "import mlflow", "s"),
        ("time to first poll", "first_poll_s", "import mlflow", "s"),
        ("RSS at READY=1", "rss_ready_mib", "import mlflow RSS", "MiB"),
        ("steady RSS", "rss_steady_mib", "import mlflow RSS", "MiB"),
    ):
        base = med["import_mlflow_s"] if unit == "s" else med["import_mlflow_rss_mib"]
        report.add(label, med[key], unit, anchor_name=anchor, anchor=base)
    ready_after_poll = all(
        r >= p for r, p in zip(samples["ready_s"], samples["first_poll_s"], strict=True)
    )
    report.add(
        "READY=1 after the first poll (runs)",
        sum(r >= p for r, p in zip(samples["ready_s"], samples["first_poll_s"], strict=True)),
        "runs",
        target=f"all {args.runs}",
        met=ready_after_poll,
    )
    sys.exit(report.finish(args.json))


if __name__ == "__main__":
    main()
