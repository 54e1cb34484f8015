"""One registry poll cycle against a real `mlflow server`: MLflow calls and wall time.

Registers MODELS models (2 versions each, v2 Production, one live-accuracy
observation each), then times the monitor's poll (registry snapshot + live
accuracy read-back) for 10, 50 and all models, cold (first poll) and warm
(nothing changed since), with the per-model reads one at a time and then 8 in
flight (the default ``mlflow.concurrency``). Calls are counted at the HTTP
layer. Target: calls linear in models, a cycle < 5 s with 100 models.

    uv run python benchmarks/poll.py [--models 100]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.mlflow_server import start_server, stop_server

os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")

REQUESTS = 0


def _count_http() -> None:
    import requests

    original = requests.Session.request

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        global REQUESTS  # noqa: PLW0603  (a benchmark's one counter)
        REQUESTS += 1
        return original(self, *args, **kwargs)

    requests.Session.request = counted  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=100)
    args = parser.parse_args()
    _count_http()

    from watcher.backends.mlflow_observations import FeedbackReader, report_accuracy
    from watcher.backends.mlflow_registry import MlflowRegistry

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp))
        try:
            setup = MlflowRegistry(url)
            t0 = time.perf_counter()
            for i in range(args.models):
                name = f"bench-{i:03d}"
                setup.client.create_registered_model(name)
                for _ in range(2):
                    setup.client.create_model_version(name, source="s3://bench/model")
                setup.set_production(name, "2")
                report_accuracy(name, 0.95, 500, registry=setup)
            print(f"setup: {args.models} models in {time.perf_counter() - t0:.1f} s")
            head = f"{'models':>6} {'poll':>5} {'http calls':>10}"
            print(f"{head} {'1 at a time s':>13} {'8 at a time s':>13}")
            sizes = sorted({n for n in (10, 50, args.models) if n <= args.models})
            for n in sizes:
                # bench-000 … bench-(n-1) as exact names: the glob path is the same code.
                patterns = [f"bench-{i:03d}" for i in range(n)]
                rows: dict[str, list[str]] = {"cold": [], "warm": []}
                for concurrency in (1, 8):
                    registry = MlflowRegistry(url, concurrency=concurrency)
                    reader = FeedbackReader(registry)
                    for label in ("cold", "warm"):
                        before = REQUESTS
                        start = time.perf_counter()
                        snaps = registry.snapshot(patterns)
                        wanted = [(s.name, s.production) for s in snaps if s.production]
                        obs = reader.observations(wanted)
                        wall = time.perf_counter() - start
                        assert len(snaps) == n and all(obs[k] for k in wanted), "bad poll"
                        if concurrency == 1:
                            rows[label].append(f"{REQUESTS - before:>10}")
                        rows[label].append(f"{wall:>13.2f}")
                for label, cells in rows.items():
                    print(f"{n:>6} {label:>5} {' '.join(cells)}")
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
