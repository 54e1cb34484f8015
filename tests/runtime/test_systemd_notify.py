"""`watcher run` under a fake systemd: READY, watchdog pings, health, /healthz, STOPPING."""

from __future__ import annotations

import json
import signal
import time
from itertools import pairwise
from pathlib import Path

import httpx
import pytest

from tests.runtime.conftest import (
    NotifySocket,
    free_port,
    promtool,
    start_watcher,
    stop_watcher,
    wait_heartbeat,
    wait_settled,
)

WATCHDOG_USEC = 1_000_000  # systemd would kill us after 1 s without a ping
# READY=1 follows the first registry poll (`import mlflow`, a new SQLite store): seconds,
# more on a busy box.
READY_WITHIN = 120.0


def _wait_status(url: str, status: int, timeout: float = 15.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2)
        except httpx.TransportError:
            last = None
        if last is not None and last.status_code == status:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {status}; last: {last and last.text}")


def test_run_under_fake_systemd(tmp_path: Path, notify_socket: NotifySocket) -> None:
    """READY=1, pings every ~0.5 s while healthy only, /healthz 200/503/200, STOPPING=1, exit 0.

    One daemon for the whole story: starting one costs seconds on a busy machine.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_watcher(
        tmp_path,
        notify_socket,
        watchdog_usec=WATCHDOG_USEC,
        extra_env={"WATCHER_HTTP__LISTEN": f"127.0.0.1:{port}"},
    )
    try:
        ready_at = notify_socket.wait_for("READY=1", timeout=READY_WITHIN)
        ready = next(m for _, m in notify_socket.seen if "READY=1" in m)
        assert f"MAINPID={proc.pid}" in ready.splitlines()
        assert ready_at <= notify_socket.wait_for("WATCHDOG=1", timeout=2)
        healthy = _wait_status(f"{base}/healthz", 200).json()
        assert "ok" == healthy["status"]
        assert healthy["checks"]["core"]["ok"] is True

        # The data dir disappears: failing check named, STATUS= says so, no pings.
        (tmp_path / "data").rmdir()
        failing = _wait_status(f"{base}/healthz", 503).json()
        assert "failing" == failing["status"]
        assert "data dir is missing" in failing["failing"]["core"]["problems"]
        quiet_from = notify_socket.wait_for("STATUS=unhealthy:")
        # Positive marker: a heartbeat written 1 s (two ping intervals) after the status
        # changed proves the loop went past two due pings while unhealthy.
        detail = wait_heartbeat(tmp_path / ".watcher", after=time.time() + 1.0)
        assert detail["checks"]["core"]["ok"] is False, detail
        assert [] == notify_socket.pings(since=quiet_from), "pinged while unhealthy"

        # It comes back: 200 and pings again.
        (tmp_path / "data").mkdir()
        _wait_status(f"{base}/healthz", 200)
        counted_from = notify_socket.wait_for("STATUS=healthy")
        wait_settled(tmp_path)
        # Pings resume, rate-limited to one per half interval (0.5 s): six take at least
        # ~2.5 s to send. A storm (a ping per loop pass) would bring six at once. The
        # margin (+3) covers pings read late by this process; lateness is benchmarked.
        pings = notify_socket.wait_pings(6, since=counted_from, timeout=60)
        span = pings[-1] - counted_from
        assert len(pings) <= span / 0.5 + 3, [round(b - a, 2) for a, b in pairwise(pings)]

        metrics = httpx.get(f"{base}/metrics", timeout=5)
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'watcher_component_healthy{component="core"} 1.0' in metrics.text
        checked = promtool(metrics.content)
        assert 0 == checked.returncode, checked.stdout + checked.stderr

        assert proc.poll() is None
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1", timeout=10)
        assert 0 == proc.wait(timeout=10)
        assert time.monotonic() - sent < 10
    finally:
        out = stop_watcher(proc)
    assert '"event": "stopping"' in out


def test_no_pings_for_another_watchdog_pid(tmp_path: Path, notify_socket: NotifySocket) -> None:
    """WATCHDOG_PID naming another process: READY=1 still arrives, but no WATCHDOG=1."""
    proc = start_watcher(tmp_path, notify_socket, watchdog_usec=WATCHDOG_USEC, watchdog_pid="1")
    try:
        ready_at = notify_socket.wait_for("READY=1", timeout=READY_WITHIN)
        # A heartbeat written 1 s from now: the loop went past two due pings since READY.
        wait_heartbeat(tmp_path / ".watcher", after=time.time() + 1.0)
        assert [] == notify_socket.pings(since=ready_at)
    finally:
        stop_watcher(proc)  # SIGKILL: the stop path is measured in the test above


@pytest.mark.slow  # a real start with its first poll (import mlflow); the loop: test_daemon_loop
@pytest.mark.parametrize("mlflow", ["embedded", "down"])
def test_ready_follows_the_first_poll_attempt(
    tmp_path: Path, notify_socket: NotifySocket, mlflow: str
) -> None:
    """READY=1 and the `ready` line come once the first registry poll attempt has been
    handled: its result (embedded SQLite MLflow), or the outage (nothing listens on the
    tracking URI's port), which is then handled as any outage, not a start-up failure."""
    extra = {}
    if mlflow == "down":
        extra = {
            "WATCHER_MLFLOW__TRACKING_URI": f"http://127.0.0.1:{free_port()}",
            "WATCHER_MLFLOW__MAX_RETRIES": "0",
        }
    proc = start_watcher(tmp_path, notify_socket, extra_env=extra)
    try:
        notify_socket.wait_for("READY=1", timeout=READY_WITHIN)
        proc.send_signal(signal.SIGTERM)  # a clean stop: every line written, `ready` too
        assert 0 == proc.wait(timeout=60)
    finally:
        out = stop_watcher(proc)
    events = [json.loads(line)["event"] for line in out.splitlines() if line.startswith("{")]
    first_poll = "registry_first_poll" if mlflow == "embedded" else "mlflow_unreachable"
    assert first_poll in events and "ready" in events, events
    assert events.index(first_poll) < events.index("ready"), events
