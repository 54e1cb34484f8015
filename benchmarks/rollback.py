"""Automatic rollback latency against a real `mlflow server`, in both registry modes.

For each mode, TRIALS models get v1 and v2 (v2 Production, lineage tag → v1,
training accuracy tags), then the daemon's real components (``build_components``:
alerting, data watcher, registry monitor polling every --poll seconds,
auto-rollback) run in a Daemon loop on a thread. One model at a time, poor
live accuracy is reported for v2 at a random moment of the poll cycle, and
two times are taken (wall clock, the same clock as ``PollResult.at``):

- ``seen-to-moved``: from the moment the poll that first read the bad live accuracy
  finished its reads (``PollResult.at``, just before it queues the result and wakes
  the main loop) to the return of the registry call that moved Production to v1:
  the main loop's hand-off, the policy, the rollback's guard reads (Production, the
  lineage versions) and its journal, and the move itself. Anchor: that move call
  alone (``set_production``), measured in the same rollbacks;
- ``report-to-moved``: from ``report_accuracy`` returning to Production moved (adds
  the wait for the next poll). Anchor: the poll interval.

Target: every rollback within one poll interval + 1 s of the report. ``--json PATH``
writes the rows (``benchmarks/report.py``).

    uv run python benchmarks/rollback.py [--poll 2] [--trials 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import operator
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.mlflow_server import start_server, stop_server
from benchmarks.report import Report, add_json_arg

if TYPE_CHECKING:
    from watcher.monitor.poll import Monitor, PollResult
    from watcher.rollback.auto import AutoRollback

os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
BAD_ACCURACY = 0.5


def _register(url: str, mode: str, names: list[str]) -> None:
    """v1 and v2 per model, v2 Production with the lineage tag the pipeline writes."""
    from watcher.backends.mlflow_registry import MlflowRegistry

    reg = MlflowRegistry(url, "stage" if mode == "stage" else "alias")
    for name in names:
        reg.client.create_registered_model(name)
        for _ in range(2):
            reg.client.create_model_version(name, source="s3://bench/model")
        reg.set_tags(name, "1", {"accuracy": "0.95"})
        reg.set_tags(name, "2", {"accuracy": "0.95", "watcher.previous_production": "1"})
        reg.set_production(name, "2")


def _wait(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark: {what} did not happen within {timeout:g} s")
        time.sleep(0.01)


def _instrument(
    monitor: Monitor, rollback: AutoRollback, threshold: float
) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Time stamps from the instances the daemon runs (the scheduler binds poll_once at start).

    Returns (seen, moved, move_call): per model, when the poll that first read the breach
    finished reading (its ``at``), when the registry call that moved Production returned,
    and how long that call took.
    """
    seen: dict[str, float] = {}
    moved: dict[str, float] = {}
    move_call: dict[str, float] = {}
    poll_once, set_production = monitor.poll_once, rollback.registry.set_production

    def timed_poll() -> PollResult | None:
        result = poll_once()
        if result is not None and result.snapshots is not None:
            for (model, _version), obs in result.observations.items():
                if any(o.value < threshold for o in obs):
                    seen.setdefault(model, result.at.timestamp())
        return result

    def timed_move(name: str, version: str) -> None:
        start = time.time()
        set_production(name, version)
        done = time.time()
        moved.setdefault(name, done)
        move_call.setdefault(name, done - start)

    setattr(monitor, "poll_once", timed_poll)  # noqa: B010  (instance patch, not the class)
    setattr(rollback.registry, "set_production", timed_move)  # noqa: B010
    return seen, moved, move_call


def bench_mode(url: str, mode: str, poll: float, trials: int, root: Path) -> dict[str, Any]:
    from watcher.app import build_components
    from watcher.backends.mlflow_observations import report_accuracy
    from watcher.backends.mlflow_registry import MlflowRegistry
    from watcher.config import Config
    from watcher.monitor.poll import Monitor
    from watcher.rollback.auto import AutoRollback
    from watcher.runtime.daemon import Daemon
    from watcher.runtime.sdnotify import SystemdNotifier
    from watcher.runtime.state import open_state

    prefix = f"rb-{mode}-"
    names = [f"{prefix}{i:02d}" for i in range(trials)]
    _register(url, mode, names)
    cfg = Config.model_validate(
        {
            "watch": {"data_dir": str(root / mode / "data")},
            "state": {"dir": str(root / mode / "state")},
            "mlflow": {"tracking_uri": url, "registry_mode": mode},
            "monitor": {
                "models": [f"{prefix}*"],
                "poll_interval": poll,
                "window": 1,
                "min_samples": 10,
                "for": 0,
            },
            "rollback": {"auto": True},
            "alerts": {"log": False},
        }
    )
    state = open_state(cfg.state.dir)
    components = build_components(cfg, state)
    monitor = next(c for c in components if isinstance(c, Monitor))
    rollback = next(c for c in components if isinstance(c, AutoRollback))

    seen, moved, move_call = _instrument(monitor, rollback, cfg.monitor.threshold)

    stop = threading.Event()
    daemon = Daemon(state, components, notifier=SystemdNotifier(env={}), stop=stop)
    thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    thread.start()
    reporter = MlflowRegistry(url, cfg.mlflow.registry_mode)
    rows: list[tuple[float, float, float]] = []
    try:
        _wait("the first registry poll", lambda: monitor.health().detail["models"] == trials, 60)
        rng = random.Random(1)  # a reproducible schedule
        for name in names:
            time.sleep(rng.uniform(0, poll))  # land anywhere in the poll cycle
            report_accuracy(name, BAD_ACCURACY, 500, version="2", registry=reporter)
            reported = time.time()
            _wait(f"{name}: Production moved", partial(operator.contains, moved, name), poll + 30)
            rows.append((moved[name] - seen[name], moved[name] - reported, move_call[name]))
        for name in names:
            info = reporter.get_version(name, "2")
            if reporter.production(name) != "1" or info is None or not info.quarantined:
                raise SystemExit(f"{name}: registry not rolled back as expected")
    finally:
        stop.set()
        thread.join(30)
        state.close()
    return {"mode": mode, "rows": rows}


def _rows(report: Report, mode: str, rows: list[tuple[float, float, float]], poll: float) -> None:
    target = poll + 1.0
    seen, reported, call = ([r[k] for r in rows] for k in range(3))
    med = statistics.median
    report.add(
        f"rollback-{mode}-seen-to-moved",
        med(seen),
        "s",
        anchor_name="the move call alone",
        anchor=med(call),
    )
    report.add(f"rollback-{mode}-seen-to-moved-max", max(seen), "s")
    report.add(
        f"rollback-{mode}-report-to-moved",
        med(reported),
        "s",
        anchor_name="poll interval",
        anchor=poll,
    )
    report.add(
        f"rollback-{mode}-report-to-moved-max",
        max(reported),
        "s",
        anchor_name="poll interval",
        anchor=poll,
        target=f"<= {target:g} s",
        met=max(reported) <= target,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--poll", type=float, default=2.0, help="monitor.poll_interval, seconds")
    parser.add_argument("--trials", type=int, default=5, help="rollbacks per registry mode")
    add_json_arg(parser)
    args = parser.parse_args()

    from watcher.runtime.logging import configure

    configure("error")  # the rollbacks log warnings by design; the figures are the output
    report = Report("rollback", vars(args))
    with tempfile.TemporaryDirectory(prefix="bench-rollback-") as tmp:
        root = Path(tmp)
        started = time.monotonic()
        proc, url = start_server(root)
        print(f"mlflow server up in {time.monotonic() - started:.1f} s at {url}", flush=True)
        try:
            results = [
                bench_mode(url, mode, args.poll, args.trials, root) for mode in ("alias", "stage")
            ]
        finally:
            stop_server(proc)
    for res in results:
        _rows(report, res["mode"], res["rows"], args.poll)
    return report.finish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
