"""Helpers for the whole-system reliability suite: `watcher run` as a subprocess on tmp dirs.

The daemon runs with the ``command`` trigger backend (``tests.data.conftest.RECORD_RUN``
appends each run's data hash to ``runs.txt``), the ``file`` alert channel (JSONL in the
state dir) and, unless a test needs a registry, an MLflow URL nobody listens on with no
client retries: the monitor then fails fast and raises ``MlflowUnreachable``, which gives
the scenario real notifications without starting a server.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.data.conftest import RECORD_RUN

WATCHER = [sys.executable, "-m", "watcher.cli"]
Popen = subprocess.Popen[bytes]


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_env(root: Path, **extra: str) -> dict[str, str]:
    """Environment for `watcher run` on ``root/data`` and ``root/state`` (fast intervals)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(
        {
            "WATCHER_WATCH__DATA_DIR": str(root / "data"),
            "WATCHER_STATE__DIR": str(root / "state"),
            "WATCHER_WATCH__QUIET_PERIOD": "0.2",
            "WATCHER_WATCH__MAX_WAIT": "2",
            "WATCHER_TRIGGER__BACKEND": "command",
            "WATCHER_TRIGGER__COMMAND": json.dumps(
                [sys.executable, "-c", RECORD_RUN, str(root / "runs.txt")]
            ),
            "WATCHER_TRIGGER__RETRY_INITIAL": "0.2",
            "WATCHER_TRIGGER__RETRY_MAX": "1",
            "WATCHER_MLFLOW__TRACKING_URI": f"http://127.0.0.1:{closed_port()}",
            "WATCHER_MLFLOW__MAX_RETRIES": "0",
            "WATCHER_MLFLOW__REQUEST_TIMEOUT": "2",
            "WATCHER_MONITOR__POLL_INTERVAL": "1",
            "WATCHER_MONITOR__MLFLOW_DOWN_ALERT_AFTER": "0.5",
            "WATCHER_ALERTS__LOG": "false",
            "WATCHER_LOG__FORMAT": "json",
            "PYTHONUNBUFFERED": "1",  # keep the log of a SIGKILLed daemon
        }
    )
    env.update(extra)
    return env


def start_daemon(root: Path, env: dict[str, str], log_name: str = "watcher.log") -> Popen:
    """`watcher run` in ``root`` with stdout+stderr appended to ``root/log_name``."""
    with (root / log_name).open("ab") as log:
        return subprocess.Popen(
            [*WATCHER, "run"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def stop_daemon(proc: Popen, timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL if it does not stop in time; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=10)


def wait_for(
    cond: Callable[[], bool],
    timeout: float,
    what: str,
    poll: float = 0.1,
    *,
    diagnose: Callable[[], str] | None = None,
) -> None:
    """Poll ``cond`` until true; on timeout fail with ``diagnose()`` in the message (what
    the system under test was doing, so a failure on a loaded box names the stalled hop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(poll)
    message = f"timed out after {timeout} s waiting for {what}"
    if diagnose is not None:
        try:
            message += "\n" + diagnose()
        except Exception as exc:  # the diagnosis must not hide the timeout
            message += f"\n(diagnosis failed: {type(exc).__name__}: {exc})"
    raise AssertionError(message)


def db(root: Path) -> sqlite3.Connection:
    return sqlite3.connect(root / "state" / "state.db", timeout=30)


def integrity(root: Path) -> str:
    """``PRAGMA integrity_check`` of the state DB ("ok" when it was never created)."""
    if not (root / "state" / "state.db").exists():
        return "ok"
    conn = db(root)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def run_hashes(root: Path) -> list[str]:
    path = root / "runs.txt"
    return path.read_text().split() if path.exists() else []


def duplicates(items: list[str]) -> list[str]:
    return [k for k, n in collections.Counter(items).items() if n > 1]


def jsonl(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def notification_keys(path: Path) -> list[str]:
    """(fingerprint, kind, sequence) of every JSONL notification: the delivery identity."""
    return [f"{n['fingerprint']}/{n['kind']}/{n['sequence']}" for n in jsonl(path)]


def delivered_file_keys(root: Path) -> tuple[list[str], int]:
    """File-channel deliveries marked delivered in the DB, and how many are still pending."""
    conn = db(root)
    try:
        rows = conn.execute(
            "SELECT fingerprint, kind, sequence, delivered_at FROM alert_deliveries "
            "WHERE channel = 'file'"
        ).fetchall()
    except sqlite3.OperationalError:  # no alert tables yet (killed before the migration)
        return [], 0
    finally:
        conn.close()
    done = [f"{fp}/{kind}/{seq}" for fp, kind, seq, at in rows if at is not None]
    return done, sum(1 for r in rows if r[3] is None)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "data").mkdir()
    yield tmp_path


def mount_tmpfs(path: Path, options: str) -> None:
    """Mount a tmpfs on ``path``. For tests marked ``root`` (skipped when not root): a root
    that still may not mount (a container without CAP_SYS_ADMIN) fails with the reason —
    never a silent fallback to something else."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError as exc:
        pytest.fail(f"mount -t tmpfs {path}: {exc}")
    if done.returncode != 0:
        pytest.fail(f"mount -t tmpfs {path} refused: {done.stderr.strip()}")


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10, check=False)
