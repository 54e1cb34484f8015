"""One registry poll cycle against a real `mlflow server`: MLflow calls and wall time.

Registers MODELS models (2 versions each, v2 Production, one live-accuracy
observation each), then times the monitor's poll (registry snapshot + live
accuracy read-back) for 10, 50 and all models, cold (first poll) and warm
(nothing changed since). Calls are counted at the HTTP layer. Target: calls
linear in models, a cycle < 5 s with 100 models.

    uv run python benchmarks/poll.py [--models 100]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_server(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            *("--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"),
            *("--artifacts-destination", str(root / "artifacts")),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        ],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):  # noqa: S310  (http://)
                return proc, url
        except OSError:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("mlflow server did not become healthy in 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=100)
    args = parser.parse_args()
    _count_http()

    from watcher.feedback import FeedbackReader, report_accuracy
    from watcher.registry_mlflow import MlflowRegistry

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _start_server(Path(tmp))
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
            print(f"{'models':>6} {'poll':>5} {'http calls':>10} {'wall s':>7}")
            sizes = sorted({n for n in (10, 50, args.models) if n <= args.models})
            for n in sizes:
                # bench-000 … bench-(n-1) as exact names: the glob path is the same code.
                patterns = [f"bench-{i:03d}" for i in range(n)]
                registry = MlflowRegistry(url)
                reader = FeedbackReader(registry)
                for label in ("cold", "warm"):
                    before = REQUESTS
                    start = time.perf_counter()
                    snaps = registry.snapshot(patterns)
                    wanted = [(s.name, s.production) for s in snaps if s.production]
                    obs = reader.observations(wanted)
                    wall = time.perf_counter() - start
                    assert len(snaps) == n and all(obs[k] for k in wanted), "bad poll"
                    print(f"{n:>6} {label:>5} {REQUESTS - before:>10} {wall:>7.2f}")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
