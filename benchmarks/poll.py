"""One registry poll cycle against a real `mlflow server`: MLflow calls and wall time.

For each size (100, 300 and 1,000 models, up to --models) a store is seeded
once into STORE/<size> (default /tmp/watcher-bench-poll) and reused by later
runs: 2 versions per model, v2 Production, one live-accuracy observation each
and a second one for the first 100 (their cold read is 2 metric-history calls
each: the in-flight reads ``mlflow.concurrency`` applies to). The monitor's
poll (registry snapshot + live-accuracy read-back) of every model is timed
against a real `mlflow server`, cold (a new adapter: first poll) and warm
(nothing changed since), with ``mlflow.concurrency`` 1 and 8 in alternating runs. Calls are
counted at the HTTP layer; each figure is the median of --repeat runs.

Rows (``benchmarks/report.py``), per size and poll: ``poll-N-warm`` / ``poll-N-cold``
(seconds, at the default ``mlflow.concurrency``, 8) against the anchor measured in the
same run, the poll's calls
times the median wall of one minimal call (the floor at that call count), with the
targets (warm 300: 1.0 s; cold 300: 3 s); ``…-calls`` (MLflow calls, warm 300: ≤ 10);
``…-inflight8``: the same poll with 8 reads in flight against 1 in flight (ratio < 1:
concurrency pays). ``--json PATH`` writes the rows.

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
from benchmarks.report import Report, add_json_arg

os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")

REQUESTS = 0
HISTORY = 100  # models whose run holds 2 observations: a cold poll reads their histories
TARGETS = {"warm": (1.0, 10), "cold": (3.0, None)}  # seconds, calls (for 300 models)
TARGET_MODELS = 300


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


def _rows(
    report: Report, n: int, runs: dict[int, list[dict[str, tuple[float, int]]]], floor: float
) -> None:
    """The rows of one store size: each poll at the default concurrency (8 in flight), its
    calls, and 8 vs 1 in flight."""
    for label in ("cold", "warm"):
        wall = {c: statistics.median(r[label][0] for r in rs) for c, rs in runs.items()}
        calls = max(r[label][1] for r in runs[8])
        t_s, t_calls = TARGETS[label] if n == TARGET_MODELS else (None, None)
        name = f"poll-{n}-{label}"
        report.add(
            name,
            wall[8],
            "s",
            anchor_name=f"{calls} calls x one minimal call",
            anchor=calls * floor,
            target="info" if t_s is None else f"<= {t_s:g} s",
            met=None if t_s is None else wall[8] <= t_s,
        )
        report.add(
            f"{name}-calls",
            calls,
            "calls",
            target="info" if t_calls is None else f"<= {t_calls}",
            met=None if t_calls is None else calls <= t_calls,
        )
        report.add(
            f"{name}-inflight8",
            wall[8],
            "s",
            anchor_name="1 in flight",
            anchor=wall[1],
            target="info (< 1: pays)",
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=1000, help="largest case (100, 300, 1000)")
    parser.add_argument(
        "--store", type=Path, default=Path(tempfile.gettempdir()) / "watcher-bench-poll"
    )
    parser.add_argument("--repeat", type=int, default=5)
    add_json_arg(parser)
    args = parser.parse_args()
    _count_http()
    report = Report("poll", vars(args))
    for n in sorted({n for n in (100, 300, 1000) if n <= args.models}):
        store = args.store / str(n)
        _seed(store, n)
        proc, url = start_server(store)
        try:
            runs: dict[int, list[dict[str, tuple[float, int]]]] = {1: [], 8: []}
            for _ in range(args.repeat):  # alternating: load changes hit both alike
                for concurrency, done in runs.items():
                    done.append(_poll(url, n, concurrency))
            floor = _floor(url, args.repeat)  # after the polls: the server is warm
            report.add(f"poll-{n}-one-call", floor, "s", target="info (the anchor's unit)")
            _rows(report, n, runs, floor)
        finally:
            stop_server(proc)
    return report.finish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
