"""One registry poll cycle against a real `mlflow server`: MLflow calls and wall time.

For each size (100, 300 and 1,000 models, up to --models) a store is seeded
once into STORE/<size> (default /tmp/watcher-bench-poll) and reused by later
runs: 2 versions per model, v2 Production, one live-accuracy observation each
and a second one for the first 100 (their cold read is 2 metric-history calls
each: the in-flight reads ``mlflow.concurrency`` applies to). The monitor's
poll (registry snapshot + live-accuracy read-back) of every model is timed
against a real `mlflow server`, cold (a new adapter: first poll) and warm
(nothing changed since), with ``mlflow.concurrency`` 1 and 8. Calls are
counted at the HTTP layer; each figure is the median of --repeat runs.

Per case: seconds and calls, the target (warm 300: 1.0 s and 10 calls; cold:
3 s), the ratio figure/target, and the anchor measured in the same run: the
poll's calls times the median wall of one minimal call (the floor at that
call count). ``--json PATH`` writes the same rows.

    uv run python benchmarks/poll.py [--models 1000] [--store DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.mlflow_server import start_server, stop_server

os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")

REQUESTS = 0
HISTORY = 100  # models whose run holds 2 observations: a cold poll reads their histories
TARGETS = {"warm": (1.0, 10), "cold": (3.0, None)}  # seconds, calls


def _count_http() -> None:
    import requests

    original = requests.Session.request

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        global REQUESTS  # noqa: PLW0603  (a benchmark's one counter)
        REQUESTS += 1
        return original(self, *args, **kwargs)

    requests.Session.request = counted  # type: ignore[method-assign]


def _seed(store: Path, models: int) -> None:
    """Register bench-0000 … up to ``models`` in-process (no server yet), one observation
    each, and a second one for the first HISTORY; done once, resumed where it stopped."""
    marker = store / "seeded.json"
    done = json.loads(marker.read_text()) if marker.exists() else {}
    have, second = done.get("models", 0), done.get("history", 0)
    if have >= models and second >= min(HISTORY, models):
        print(f"store: {store} ({have} models, reused)")
        return
    from watcher.backends.mlflow_observations import report_accuracy
    from watcher.backends.mlflow_registry import MlflowRegistry

    store.mkdir(parents=True, exist_ok=True)
    setup = MlflowRegistry(f"sqlite:///{store / 'mlflow.db'}")
    t0 = time.perf_counter()
    for i in range(have, models):
        name = f"bench-{i:04d}"
        if not setup.model_exists(name):
            setup.client.create_registered_model(name)
        while len(setup.versions(name)) < 2:
            setup.client.create_model_version(name, source="s3://bench/model")
        setup.set_production(name, "2")
        report_accuracy(name, 0.95, 500, registry=setup)
        marker.write_text(json.dumps({"models": i + 1}))
    for i in range(second, min(HISTORY, models)):
        report_accuracy(f"bench-{i:04d}", 0.93, 400, registry=setup)
        marker.write_text(json.dumps({"models": models, "history": i + 1}))
    print(f"store: seeded up to {models} models in {time.perf_counter() - t0:.0f} s")


def _floor(url: str, repeat: int) -> float:
    """Median wall of one minimal registry call (1 model) on a warm connection."""
    from watcher.backends.mlflow_registry import MlflowRegistry

    client = MlflowRegistry(url).client
    walls = []
    for _ in range(repeat * 3):
        t = time.perf_counter()
        client.search_registered_models(max_results=1)
        walls.append(time.perf_counter() - t)
    return statistics.median(walls)


def _poll(url: str, n: int, concurrency: int) -> dict[str, tuple[float, int]]:
    from watcher.backends.mlflow_observations import FeedbackReader
    from watcher.backends.mlflow_registry import MlflowRegistry

    patterns = ["bench-*"]
    registry = MlflowRegistry(url, concurrency=concurrency)
    reader = FeedbackReader(registry)
    out = {}
    for label in ("cold", "warm"):
        before = REQUESTS
        start = time.perf_counter()
        snaps = registry.snapshot(patterns)
        wanted = [(s.name, s.production) for s in snaps if s.production]
        obs = reader.observations(wanted)
        wall = time.perf_counter() - start
        assert len(snaps) == n and all(obs[k] for k in wanted), "bad poll"
        out[label] = (wall, REQUESTS - before)
    return out


def _row(
    n: int, label: str, concurrency: int, runs: list[dict[str, tuple[float, int]]], floor: float
) -> dict[str, Any]:
    wall = statistics.median(r[label][0] for r in runs)
    calls = max(r[label][1] for r in runs)
    t_s, t_calls = TARGETS[label]
    anchor = calls * floor
    target = f"{t_s:g} s" + (f", {t_calls} calls" if t_calls else "")
    print(
        f"{n:>6} {label:>5} {concurrency:>9} {wall:>6.2f} {calls:>5} "
        f"{target:>16} {wall / t_s:>5.2f} {anchor:>8.3f} {wall / anchor:>8.1f}",
        flush=True,
    )
    return {
        "models": n,
        "poll": label,
        "concurrency": concurrency,
        "seconds": round(wall, 3),
        "calls": calls,
        "target_seconds": t_s,
        "target_calls": t_calls,
        "ratio": round(wall / t_s, 2),
        "anchor_seconds": round(anchor, 3),
        "x_anchor": round(wall / anchor, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=1000, help="largest case (100, 300, 1000)")
    parser.add_argument(
        "--store", type=Path, default=Path(tempfile.gettempdir()) / "watcher-bench-poll"
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    _count_http()
    rows: list[dict[str, Any]] = []
    floors: dict[int, float] = {}
    print(
        f"{'models':>6} {'poll':>5} {'in flight':>9} {'s':>6} {'calls':>5} "
        f"{'target':>16} {'ratio':>5} {'anchor s':>8} {'x anchor':>8}"
    )
    for n in sorted({n for n in (100, 300, 1000) if n <= args.models}):
        store = args.store / str(n)
        _seed(store, n)
        proc, url = start_server(store)
        try:
            floors[n] = floor = _floor(url, args.repeat)
            for concurrency in (1, 8):
                runs = [_poll(url, n, concurrency) for _ in range(args.repeat)]
                for label in ("cold", "warm"):
                    rows.append(_row(n, label, concurrency, runs, floor))
        finally:
            stop_server(proc)
    print("anchor: the poll's calls x one minimal call (search 1 model) in the same run:")
    print("  " + ", ".join(f"{n} models {f * 1000:.0f} ms" for n, f in floors.items()))
    if args.json:
        doc = {"machine": "2-core box, other work running", "floor_call_s": floors, "rows": rows}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
