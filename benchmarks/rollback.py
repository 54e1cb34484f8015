"""Automatic rollback latency against a real `mlflow server`, in both registry modes.

For each mode, TRIALS models get v1 and v2 (v2 Production, lineage tag → v1,
training accuracy tags), then the daemon's real components (``build_components``:
alerting, data watcher, registry monitor polling every --poll seconds,
auto-rollback) run in a Daemon loop on a thread. One model at a time, poor
live accuracy is reported for v2 at a random moment of the poll cycle, and
two times are taken:

- observation → moved: from the end of the poll that first saw the bad live
  accuracy to the return of the registry call that moved Production to v1
  (the daemon loop picks a poll result up within its 1 s idle tick);
- report → moved: from ``report_accuracy`` returning to Production moved
  (adds the wait for the next poll).

Target: within one poll interval + 1 s.

    uv run python benchmarks/rollback.py [--poll 2] [--trials 5]
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
) -> tuple[dict[str, float], dict[str, float]]:
    """Time stamps from the instances the daemon runs (the scheduler binds poll_once at start).

    Returns (seen, moved): per model, when the poll that first saw the breach ended,
    and when the registry call that moved Production returned.
    """
    seen: dict[str, float] = {}
    moved: dict[str, float] = {}
    poll_once, set_production = monitor.poll_once, rollback.registry.set_production

    def timed_poll() -> PollResult | None:
        result = poll_once()
        done = time.monotonic()
        if result is not None and result.snapshots is not None:
            for (model, _version), obs in result.observations.items():
                if any(o.value < threshold for o in obs):
                    seen.setdefault(model, done)
        return result

    def timed_move(name: str, version: str) -> None:
        set_production(name, version)
        moved.setdefault(name, time.monotonic())

    setattr(monitor, "poll_once", timed_poll)  # noqa: B010  (instance patch, not the class)
    setattr(rollback.registry, "set_production", timed_move)  # noqa: B010
    return seen, moved


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

    seen, moved = _instrument(monitor, rollback, cfg.monitor.threshold)

    stop = threading.Event()
    daemon = Daemon(state, components, notifier=SystemdNotifier(env={}), stop=stop)
    thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    thread.start()
    reporter = MlflowRegistry(url, cfg.mlflow.registry_mode)
    rows: list[tuple[float, float]] = []
    try:
        _wait("the first registry poll", lambda: monitor.health().detail["models"] == trials, 60)
        rng = random.Random(1)  # a reproducible schedule
        for name in names:
            time.sleep(rng.uniform(0, poll))  # land anywhere in the poll cycle
            report_accuracy(name, BAD_ACCURACY, 500, version="2", registry=reporter)
            reported = time.monotonic()
            _wait(f"{name}: Production moved", partial(operator.contains, moved, name), poll + 30)
            rows.append((moved[name] - seen[name], moved[name] - reported))
        for name in names:
            info = reporter.get_version(name, "2")
            if reporter.production(name) != "1" or info is None or not info.quarantined:
                raise SystemExit(f"{name}: registry not rolled back as expected")
    finally:
        stop.set()
        thread.join(30)
        state.close()
    return {"mode": mode, "rows": rows}


def _fmt(values: list[float]) -> str:
    return f"{min(values):6.3f} {statistics.median(values):6.3f} {max(values):6.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--poll", type=float, default=2.0, help="monitor.poll_interval, seconds")
    parser.add_argument("--trials", type=int, default=5, help="rollbacks per registry mode")
    args = parser.parse_args()

    from watcher.runtime.logging import configure

    configure("error")  # the rollbacks log warnings by design; the figures are the output
    with tempfile.TemporaryDirectory(prefix="bench-rollback-") as tmp:
        root = Path(tmp)
        started = time.monotonic()
        proc, url = start_server(root)
        print(f"mlflow server up in {time.monotonic() - started:.1f} s at {url}")
        target = args.poll + 1.0
        try:
            results = [
                bench_mode(url, mode, args.poll, args.trials, root) for mode in ("alias", "stage")
            ]
        finally:
            stop_server(proc)
    print(
        f"poll interval {args.poll:g} s, {args.trials} rollbacks per mode; seconds min/median/max"
    )
    print(f"{'mode':<6} {'observation → moved':>22} {'report → moved':>22}  target ≤ {target:g} s")
    ok = True
    for res in results:
        rows = res["rows"]
        obs = [r[0] for r in rows]
        rep = [r[1] for r in rows]
        met = max(obs) <= target and max(rep) <= target
        ok &= met
        print(f"{res['mode']:<6} {_fmt(obs):>22} {_fmt(rep):>22}  {'met' if met else 'MISSED'}")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
