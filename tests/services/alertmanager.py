"""Session fixture: a real Prometheus Alertmanager (Debian package) on 127.0.0.1.

Yields its base URL. Clustering is disabled (an empty --cluster.listen-address),
otherwise it would bind all interfaces. Started in its own process group and
killed as a group on teardown. Skips the tests if the binary is not installed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

BINARY = Path(os.environ.get("ALERTMANAGER_BIN", "/usr/bin/prometheus-alertmanager"))
READY_TIMEOUT_S = 30.0

# Short group timings so notifications are not the bottleneck; a "null" receiver.
CONFIG = """\
route:
  receiver: "null"
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: "null"
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"alertmanager exited with {proc.returncode}:\n{log.read_text()[-2000:]}"
            )
        try:
            if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"alertmanager not ready after {READY_TIMEOUT_S}s:\n{log.read_text()[-2000:]}"
    )


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (http://127.0.0.1:PORT) of a running Alertmanager."""
    if not BINARY.exists():
        pytest.fail(f"{BINARY} not installed: `make test` installs prometheus-alertmanager")
    home = tmp_path_factory.mktemp("alertmanager")
    config = home / "alertmanager.yml"
    config.write_text(CONFIG)
    log = home / "alertmanager.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [
                str(BINARY),
                f"--config.file={config}",
                f"--storage.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: teardown kills the group
        )
    try:
        _wait_ready(url, proc, log)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
