"""Single-instance lock on the state dir (flock), naming the holder's PID."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from watcher.errors import LockHeld, StateError

LOCK_NAME = "watcher.lock"
# Held only while a rollback runs, by the daemon and by `watcher rollback` alike.
ROLLBACK_LOCK_NAME = "rollback.lock"


class StateLock:
    """An exclusive, non-blocking flock on ``<state dir>/watcher.lock``.

    The kernel drops it when the process dies (kill -9 included), so a stale
    lock file never blocks a restart.
    """

    def __init__(self, state_dir: Path, purpose: str = "run", name: str = LOCK_NAME) -> None:
        self.path = state_dir / name
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot open lock file: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise LockHeld(f"{self.path}: held by another registry-watcher ({holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({self.purpose})\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def held(state_dir: Path, purpose: str) -> Iterator[StateLock]:
    with StateLock(state_dir, purpose) as lock:
        yield lock


def pid_alive(pid: int) -> bool:
    """False only when we know the PID is gone (another user's process still counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead (and is reaped).
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return False
    return True
