"""MLflow fixtures: a real ``mlflow server`` subprocess (session) and an in-process SQLite URI.

Facts behind the command line are in shared docs/services.md: ``--workers 1`` and
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false keep it to 2 processes; it gets its own
process group so teardown can kill the whole group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# Ready in ~8-11 s idle; 90 s ran out once with the scaleout stack starting beside it
# on the loaded 2-core box.
STARTUP_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


class MlflowServer:
    """A real, restartable ``mlflow server`` on a fixed port and database in ``root``.

    Tests that kill it use their own instance, never the session one.
    """

    def __init__(self, root: Path, port: int | None = None, backend_store_uri: str = "") -> None:
        self.root = root
        self.port = port or free_port()
        # Default: SQLite in ``root``; tests/scaleout passes a PostgreSQL URI.
        self.backend_store_uri = backend_store_uri or f"sqlite:///{root / 'mlflow.db'}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> str:
        env = {
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            # Registry webhooks to a watcher on 127.0.0.1 over plain http (tests only), and
            # a webhook created by one test is seen by the next event, not a minute later.
            "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
            "MLFLOW_WEBHOOK_CACHE_TTL": "1",
            # A delivery to a receiver that is down fails at once (the default retries a
            # refused connection for ~7 s, holding the caller of test_webhook).
            "MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES": "0",
        }
        with (self.root / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("mlflow")),
                    "server",
                    *("--backend-store-uri", self.backend_store_uri),
                    # Proxied artifacts: clients upload and download over HTTP only.
                    "--serve-artifacts",
                    *("--artifacts-destination", str(self.root / "artifacts")),
                    *("--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"),
                ],
                cwd=self.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: teardown kills the workers too
            )
        deadline = time.monotonic() + timeout
        while not _healthy(self.url):
            if self.proc.poll() is not None:
                tail = (self.root / "server.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"mlflow server exited with {self.proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after {timeout}s")
            time.sleep(0.3)
        return self.url

    def kill(self) -> None:
        """SIGKILL the whole group: an outage, not a shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Tracking URL (``http://127.0.0.1:PORT``) of a real ``mlflow server`` for the session."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def mlflow_sqlite_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``sqlite:///…/mlflow.db`` in a fresh dir; cwd moves there so ``./mlruns`` lands in tmp."""
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
