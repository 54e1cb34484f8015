"""The state dir under stress: full disk, DB deleted while running, future schema, unwritable.

The future-schema refusal itself is unit-tested in tests/runtime/test_state.py; here it is
checked end to end through `watcher run` (exit 1, path named).
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.data.conftest import DataSide, drive, make_config, runs
from tests.reliability.conftest import WATCHER, daemon_env, mount_tmpfs, umount
from watcher.errors import StateError
from watcher.runtime.daemon import Daemon
from watcher.runtime.health import CoreChecks
from watcher.runtime.state import DB_NAME, SCHEMA_VERSION, open_state


class _Disk:
    """A real 2 MiB tmpfs for the state dir (root only), filled and emptied on demand.

    No fallback: SQLite's ``max_page_count`` did not reliably fail writes in WAL mode, so a
    stand-in would have passed for the wrong reason; without root the test is skipped."""

    def __init__(self, root: Path) -> None:
        self.root = root
        mount_tmpfs(root, "size=2m,mode=0700")
        self.filler = root / "filler"

    def fill(self) -> None:
        chunk = b"\0" * 65536
        # Unbuffered: the write that hits ENOSPC raises here, not again when closing. The
        # open itself may hit it too (the state DB's WAL can already have filled the 2 MiB).
        with contextlib.suppress(OSError), self.filler.open("wb", buffering=0) as fh:
            while fh.write(chunk):
                pass

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[_Disk]:
    d = _Disk(tmp_path / "state")
    try:
        yield d
    finally:
        umount(d.root)


@pytest.mark.root
def test_full_disk_on_a_real_tmpfs_is_a_clear_error_then_recovers(
    tmp_path: Path, disk: _Disk
) -> None:
    """State dir on a full filesystem: the data change fails with "disk full" naming the DB,
    the daemon loop survives it, the DB stays intact, and once space returns the pending
    change is triggered exactly once (without waiting for the 5-minute reconcile)."""
    cfg = make_config(tmp_path, **{"watch.reconcile_interval": "1h"})
    data = cfg.watch.data_dir
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,1\n")
    state = open_state(cfg.state.dir)
    dw = DataSide(cfg, state, progress=False, follow_interval=0.2)
    daemon = Daemon(state, dw.components)
    try:
        dw.start()
        drive(dw, lambda: len(runs(tmp_path)) == 1)
        disk.fill()
        (data / "a.csv").write_text("x,y\n1,1\n2,2\n" + "3,3\n" * 2000)
        with pytest.raises(StateError, match=f"{DB_NAME}: disk full"):
            drive(dw, lambda: False, timeout=10)
        for _ in range(5):  # the loop catches it and keeps going
            daemon.tick()
        assert state.integrity_ok()
        assert 1 == len(runs(tmp_path))
        disk.free()
        drive(dw, lambda: len(runs(tmp_path)) == 2 and not dw.outbox.following(), timeout=20)
        assert state.integrity_ok()
        assert len(set(runs(tmp_path))) == 2
    finally:
        dw.stop()
        state.close()


def test_state_db_deleted_while_running_is_detected_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Deleting state.db under a running daemon turns the core health check red with a
    message naming the file (so /healthz answers 503 and systemd's watchdog restarts us);
    the restart recreates the DB, and the run markers keep the data from running twice."""
    cfg = make_config(tmp_path)
    data = cfg.watch.data_dir
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,1\n")
    state = open_state(cfg.state.dir)
    dw = DataSide(cfg, state, progress=False, follow_interval=0.2)
    core = CoreChecks(data, state, queued=dw.outbox.depth)
    daemon = Daemon(state, [core, *dw.components])
    try:
        core.start()
        dw.start()
        drive(dw, lambda: len(runs(tmp_path)) == 1 and not dw.outbox.following())
        assert daemon.healthy()
        for suffix in ("", "-wal", "-shm"):
            (cfg.state.dir / (DB_NAME + suffix)).unlink(missing_ok=True)
        daemon.tick()
        core.tick()
        health = core.health()
        assert not health.ok
        problems = health.detail["problems"]
        assert isinstance(problems, list)
        assert any(str(cfg.state.dir / DB_NAME) in p and "deleted" in p for p in problems)
        # Console rendering or stdlib logging, depending on what configured logging first.
        assert "state_db_missing" in capsys.readouterr().out + caplog.text
    finally:
        dw.stop()
        state.close()
    # The restart (systemd's, after the watchdog stops being fed): a fresh DB, no rerun.
    state = open_state(cfg.state.dir)
    dw = DataSide(cfg, state, progress=False, follow_interval=0.2)
    try:
        dw.start()
        drive(dw, lambda: state.get_meta("data.last_delivered_hash") is not None)
        drive(dw, lambda: not dw.outbox.following())
        assert 1 == len(runs(tmp_path))
    finally:
        dw.stop()
        state.close()


def _watcher_run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WATCHER, "run"],
        cwd=tmp_path,
        env=daemon_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_future_schema_makes_watcher_run_exit_1_naming_the_db(tmp_path: Path) -> None:
    """A state DB written by a newer release: `watcher run` refuses with exit 1, the path
    and both schema versions in one line, and leaves the DB untouched."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    conn = sqlite3.connect(state_dir / DB_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    done = _watcher_run(tmp_path)
    assert 1 == done.returncode, done.stderr
    assert str(state_dir / DB_NAME) in done.stderr
    assert f"schema version {SCHEMA_VERSION + 5}" in done.stderr
    assert "Traceback" not in done.stderr
    conn = sqlite3.connect(state_dir / DB_NAME)
    assert SCHEMA_VERSION + 5 == conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()


@pytest.mark.parametrize(
    "how", [pytest.param("read-only-mount", marks=pytest.mark.root), "parent-is-a-file"]
)
def test_unusable_state_dir_stops_watcher_run_naming_the_path(tmp_path: Path, how: str) -> None:
    """An unwritable state dir (a read-only filesystem — root ignores chmod: exit 1, the
    backend) or a path through a regular file (bad config, caught when the config loads:
    exit 2) stops `watcher run` at once, naming the path, no traceback."""
    if how == "read-only-mount":
        state_dir = tmp_path / "ro"
        mount_tmpfs(state_dir, "ro,size=1m")
    else:
        (tmp_path / "file").write_text("")
        state_dir = tmp_path / "file" / "state"
    try:
        done = _watcher_run(tmp_path, WATCHER_STATE__DIR=str(state_dir))
    finally:
        if how == "read-only-mount":
            umount(state_dir)
    assert (1 if how == "read-only-mount" else 2) == done.returncode, done.stderr
    assert str(state_dir) in done.stderr
    assert "Traceback" not in done.stderr
    assert 1 == len(done.stderr.strip().splitlines()), done.stderr
    assert not (tmp_path / "runs.txt").exists()
