"""Helpers for running `watcher run` as systemd would: a notify socket and a free port."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

WATCHER = str(Path(sys.executable).parent / "watcher")


@dataclass
class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET; records (time, line)."""

    path: str
    messages: queue.Queue[tuple[float, str]] = field(default_factory=queue.Queue)
    seen: list[tuple[float, str]] = field(default_factory=list)

    def wait_for(self, line: str, timeout: float = 30.0) -> float:
        """Block until a datagram with a line starting with ``line`` arrives; returns its time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                at, msg = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append((at, msg))
            if any(part.startswith(line) for part in msg.splitlines()):
                return at
        raise AssertionError(f"no {line!r} within {timeout} s; got {[m for _, m in self.seen]}")

    def drain(self) -> list[tuple[float, str]]:
        while True:
            try:
                self.seen.append(self.messages.get_nowait())
            except queue.Empty:
                return self.seen

    def pings(self, since: float = 0.0) -> list[float]:
        return [at for at, msg in self.drain() if msg == "WATCHDOG=1" and at >= since]

    def wait_pings(self, n: int, since: float, timeout: float = 30.0) -> list[float]:
        """Block until ``n`` pings arrived at or after ``since``; returns their times."""
        deadline = time.monotonic() + timeout
        while len(got := self.pings(since)) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(got)} of {n} pings within {timeout} s")
            try:
                self.seen.append(self.messages.get(timeout=0.5))
            except queue.Empty:
                continue
        return got


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # A short path: AF_UNIX paths are limited to 108 bytes, pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="sd") as tmp:
        path = str(Path(tmp) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0.2)
        ns = NotifySocket(path)
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                try:
                    data = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                ns.messages.put((time.monotonic(), data.decode()))

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        try:
            yield ns
        finally:
            stop.set()
            thread.join(timeout=2)
            sock.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_watcher(
    cwd: Path,
    notify: NotifySocket | None = None,
    *,
    watchdog_usec: int | None = None,
    watchdog_pid: str = "self",
    extra_env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """`watcher run` in ``cwd`` on embedded defaults, as systemd starts it.

    ``watchdog_pid="self"`` sets WATCHDOG_PID to the watcher's own PID (via a shell
    that execs it, so the PID is the same); any other value is passed as is.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    env.pop("MLFLOW_TRACKING_URI", None)
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(name, None)
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify.path
    argv = [WATCHER, "--log-format", "json", "run"]
    if watchdog_usec is not None:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
        if watchdog_pid == "self":
            argv = ["/bin/sh", "-c", 'WATCHDOG_PID=$$ exec "$0" "$@"', *argv]
        else:
            env["WATCHDOG_PID"] = watchdog_pid
    env.update(extra_env or {})
    return subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_settled(cwd: Path, timeout: float = 90.0) -> dict[str, object]:
    """Wait until the daemon's heartbeat shows every first poll done (``last_success`` set).

    A SIGTERM while the registry monitor's first poll is still importing MLflow
    currently waits for that import (see the service report); tests that measure
    the stop time start measuring once startup has settled.
    """
    from datetime import UTC, datetime

    from watcher.cli.status import collect, open_readonly

    state_dir = cwd / ".watcher"
    deadline = time.monotonic() + timeout
    daemon: dict[str, object] = {}
    while time.monotonic() < deadline:
        conn = open_readonly(state_dir)
        if conn is not None:
            try:
                doc = collect(
                    conn, data_dir=cwd / "data", state_dir=state_dir, now=datetime.now(UTC)
                )
            finally:
                conn.close()
            daemon = doc["daemon"]
            checks = daemon["checks"]
            assert isinstance(checks, dict)
            if daemon["running"] and all(
                c.get("last_success") is not None for c in checks.values() if "last_success" in c
            ):
                return daemon
        time.sleep(0.5)
    raise AssertionError(f"daemon never settled: {daemon}")


def wait_heartbeat(
    state_dir: Path,
    after: float,
    timeout: float = 60.0,
    also: Callable[[dict[str, Any]], bool] = lambda _doc: True,
) -> dict[str, Any]:
    """The daemon's state-DB heartbeat once one is written at wall time >= ``after`` (epoch
    seconds) and satisfies ``also``: proof that its main loop ran a full pass (pings,
    health, every component's tick) after that moment. Written every 5 s."""
    import json
    from datetime import datetime

    from watcher.cli.status import open_readonly

    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {}
    while time.monotonic() < deadline:
        conn = open_readonly(state_dir)
        if conn is not None:
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'heartbeat'").fetchone()
            finally:
                conn.close()
            if row is not None:
                doc = json.loads(row[0])
                if datetime.fromisoformat(str(doc["at"])).timestamp() >= after and also(doc):
                    return doc
        time.sleep(0.2)
    raise AssertionError(f"no heartbeat after {after} within {timeout} s; last: {doc}")


def promtool(text: bytes) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on an exposition (Debian package prometheus)."""
    exe = shutil.which("promtool") or "/usr/bin/promtool"
    return subprocess.run(
        [exe, "check", "metrics"],
        input=text.decode(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def stop_watcher(proc: subprocess.Popen[str]) -> str:
    """Kill if still running and return its output (for failure messages)."""
    if proc.poll() is None:
        proc.kill()
    out, _ = proc.communicate(timeout=10)
    return out
