"""Soak: `watcher run` (a subprocess) under a scripted mix of data changes and accuracy reports.

The daemon uses the `command` trigger backend (a tiny Python child per run) and an
in-process SQLite MLflow registry holding one model with a Production version; the
driver changes a data file and reports live accuracy (alternating healthy and breaching,
so the alert fires and resolves) for the busy part, then leaves the daemon idle.
Rows (``benchmarks/report.py``, ``--json PATH``): RSS, file descriptors and threads at
the end against the same at the start (after warm-up), runs against data changes + 1,
and CPU seconds per hour while idle. Targets: RSS growth < 10 %, no fd or thread growth,
one run per change, idle CPU < 1 % of a core (36 s per hour).

    uv run python benchmarks/soak.py --minutes 30 [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.report import Report, add_json_arg

os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")

MODEL = "soak-model"
# The `command` backend target: appends the run's data hash to a file.
RECORD_RUN = (
    "import json, sys\n"
    "conf = json.load(sys.stdin)\n"
    "with open(sys.argv[1], 'a') as fh:\n"
    "    fh.write(conf['data_hash'] + '\\n')\n"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sample:
    at: float
    rss_kib: int
    fds: int
    threads: int
    cpu_s: float


@dataclass(frozen=True)
class SoakResult:
    seconds: float
    start: Sample
    end: Sample
    idle_seconds: float
    idle_cpu_s_per_hour: float
    runs: int
    data_changes: int
    reports: int
    notifications: int

    @property
    def rss_growth(self) -> float:
        return self.end.rss_kib / self.start.rss_kib - 1.0


def sample(pid: int) -> Sample:
    """RSS, open fds, threads and CPU seconds of one process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / CLK_TCK  # utime + stime
    return Sample(
        at=time.monotonic(),
        rss_kib=int(fields["VmRSS"].split()[0]),
        fds=sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir()),
        threads=int(fields["Threads"]),
        cpu_s=cpu,
    )


def _env(root: Path, tracking_uri: str, poll_interval: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    env.update(
        {
            "WATCHER_WATCH__DATA_DIR": str(root / "data"),
            "WATCHER_STATE__DIR": str(root / "state"),
            "WATCHER_WATCH__QUIET_PERIOD": "0.3",
            "WATCHER_TRIGGER__BACKEND": "command",
            "WATCHER_TRIGGER__COMMAND": json.dumps(
                [sys.executable, "-c", RECORD_RUN, str(root / "runs.txt")]
            ),
            "WATCHER_MLFLOW__TRACKING_URI": tracking_uri,
            "WATCHER_MONITOR__MODELS": MODEL,
            "WATCHER_MONITOR__POLL_INTERVAL": str(poll_interval),
            "WATCHER_MONITOR__MIN_SAMPLES": "10",
            "WATCHER_MONITOR__WINDOW": "1",
            "WATCHER_PIPELINE__MODEL_NAME": MODEL,
            "WATCHER_ALERTS__LOG": "false",
            "WATCHER_LOG__FORMAT": "json",
            "WATCHER_LOG__LEVEL": "warning",
        }
    )
    return env


def _register(tracking_uri: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model(MODEL)
    client.create_model_version(MODEL, source="s3://unused-bucket/soak/1")
    client.set_registered_model_alias(MODEL, "production", "1")


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _wait(cond: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def _busy(
    csv: Path,
    seconds: float,
    rng: random.Random,
    report: Callable[[float], None],
    ran: Callable[[], int],
) -> int:
    """Alternate a data change and an accuracy report (healthy, then breaching) at random
    intervals for ``seconds``; returns how many data changes were made. Each change waits
    for its run (``ran()`` counts them, the warm-up's included), so a busy box that is slow
    to scan never merges two changes into one run and the count stays exact."""
    t0 = time.monotonic()
    step = changes = 0
    while time.monotonic() - t0 < seconds:
        step += 1
        if step % 2:
            with csv.open("a") as fh:
                fh.write(f"{step},{rng.randint(0, 1)}\n")
            changes += 1
            if not _wait(lambda n=changes: ran() >= n + 1, 120):
                raise RuntimeError(f"data change {changes} never ran")
        else:
            report(0.95 if (step // 2) % 2 else 0.5)
        time.sleep(rng.uniform(1.0, 2.5))
    return changes


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def soak(
    root: Path,
    busy_seconds: float,
    idle_seconds: float,
    *,
    poll_interval: float = 2.0,
    seed: int = 7,
) -> SoakResult:
    """Run the scripted soak in ``root``; the daemon is stopped before returning."""
    from watcher.backends.mlflow_observations import report_accuracy

    rng = random.Random(seed)
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "rows.csv").write_text("a,target\n0,0\n")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    _register(tracking_uri)
    log = (root / "watcher.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcher.cli", "run"],
        cwd=root,
        env=_env(root, tracking_uri, poll_interval),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    runs_file, alerts = root / "runs.txt", root / "state" / "alerts.jsonl"
    reports = 0

    def report(accuracy: float) -> None:
        nonlocal reports
        report_accuracy(MODEL, accuracy, 50, tracking_uri=tracking_uri)
        reports += 1

    try:
        # Warm-up: first run done and a first breach alerted, so lazy imports, MLflow
        # clients and caches exist before the baseline sample.
        if not _wait(lambda: _lines(runs_file) >= 1, 120):
            raise RuntimeError("no first run; see " + str(root / "watcher.log"))
        report(0.5)
        if not _wait(lambda: _lines(alerts) >= 1, 60):
            raise RuntimeError("no first alert; see " + str(root / "watcher.log"))
        start = sample(proc.pid)
        changes = _busy(data / "rows.csv", busy_seconds, rng, report, lambda: _lines(runs_file))
        _wait(lambda: _lines(alerts) >= 2, 60)  # a breach fired and resolved (or re-fired)
        time.sleep(3.0)  # let the last poll, run and deliveries finish
        idle_start = sample(proc.pid)
        time.sleep(idle_seconds)
        end = sample(proc.pid)
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}")
    finally:
        _stop(proc)
        log.close()
    idle = end.at - idle_start.at
    return SoakResult(
        seconds=end.at - start.at,
        start=start,
        end=end,
        idle_seconds=idle,
        idle_cpu_s_per_hour=(end.cpu_s - idle_start.cpu_s) / idle * 3600,
        runs=_lines(runs_file),
        data_changes=changes,
        reports=reports,
        notifications=_lines(alerts),
    )


def rows(report: Report, result: SoakResult) -> None:
    s, e = result.start, result.end
    report.add(
        "rss-end",
        e.rss_kib / 1024,
        "MiB",
        anchor_name="RSS at start",
        anchor=s.rss_kib / 1024,
        target="ratio < 1.10",
        met=result.rss_growth < 0.10,
    )
    report.add(
        "fds-end",
        e.fds,
        "fds",
        anchor_name="at start",
        anchor=s.fds,
        target="<= start + 1",
        met=e.fds <= s.fds + 1,
    )
    report.add(
        "threads-end",
        e.threads,
        "threads",
        anchor_name="at start",
        anchor=s.threads,
        target="<= start",
        met=e.threads <= s.threads,
    )
    report.add(
        "runs",
        result.runs,
        "runs",
        anchor_name="data changes + warm-up",
        anchor=result.data_changes + 1,
        target="one per change",
        met=result.runs == result.data_changes + 1,
    )
    report.add(
        "notifications",
        result.notifications,
        "alerts",
        target=">= 2",
        met=result.notifications >= 2,
    )
    report.add(
        "idle-cpu",
        result.idle_cpu_s_per_hour,
        "s/h",
        target="< 36 s/h (1 % of a core)",
        met=result.idle_cpu_s_per_hour < 36,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="total soak time")
    parser.add_argument("--idle-share", type=float, default=0.2, help="idle part at the end")
    parser.add_argument(
        "--poll-interval", type=float, default=10.0, help="monitor.poll_interval (s)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    add_json_arg(parser)
    args = parser.parse_args()
    report = Report("soak", vars(args))
    total = args.minutes * 60
    root = Path(tempfile.mkdtemp(prefix="watcher-soak-"))
    result = soak(
        root,
        total * (1 - args.idle_share),
        total * args.idle_share,
        poll_interval=args.poll_interval,
    )
    print(
        f"soak: {result.seconds / 60:.1f} min after warm-up, registry poll every "
        f"{args.poll_interval:g} s, {result.reports} accuracy reports, idle for "
        f"{result.idle_seconds:.0f} s ({root})"
    )
    rows(report, result)
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return report.finish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
