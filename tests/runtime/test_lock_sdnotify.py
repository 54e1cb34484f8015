"""State-dir lock and the systemd notify protocol."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from watcher.errors import LockHeld
from watcher.runtime.lock import StateLock
from watcher.runtime.sdnotify import SystemdNotifier


def test_lock_is_exclusive_and_names_holder(tmp_path: Path) -> None:
    """A second lock on the same dir fails naming the holder; release frees it."""
    with StateLock(tmp_path, "run"), pytest.raises(LockHeld, match=f"pid {os.getpid()}"):
        StateLock(tmp_path, "rollback").acquire()
    with StateLock(tmp_path, "rollback") as again:
        assert again.path.exists()


def test_notify_datagrams(tmp_path: Path) -> None:
    """READY/STATUS/WATCHDOG/STOPPING reach a datagram socket at $NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        sd = SystemdNotifier(
            {
                "NOTIFY_SOCKET": str(path),
                "WATCHDOG_USEC": "2000000",
                "WATCHDOG_PID": str(os.getpid()),
            }
        )
        assert sd.watchdog_interval == 1.0
        assert sd.ready("up")
        assert sd.watchdog()
        assert sd.stopping()
        got = [server.recv(4096).decode() for _ in range(3)]
    assert got[0].startswith("READY=1\nSTATUS=up")
    assert got[1:] == ["WATCHDOG=1", "STOPPING=1"]


def test_notify_disabled_without_socket() -> None:
    """Without NOTIFY_SOCKET every call is a no-op; another PID's watchdog is ignored."""
    sd = SystemdNotifier({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert not sd.enabled
    assert not sd.ready("x")
    assert sd.watchdog_interval is None
