"""DataWatcher on the real filesystem: events, debounce, rebuilds, trigger decisions.

The watcher is driven in-process by calling tick() (as the daemon loop does) with a
short quiet period; the `command` backend appends each run's data hash to a file.
"""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from watchdog.observers.polling import PollingObserver

from pipeline.lineage import compute_manifest
from tests.data.conftest import DataSide, drive, make_config, runs, settle
from watcher.data.watcher import decide
from watcher.runtime.state import StateStore

WRITE_10K = (
    "import pathlib, sys\n"
    "root = pathlib.Path(sys.argv[1])\n"
    "for d in range(20):\n"
    "    sub = root / f'part{d:02}'\n"
    "    sub.mkdir()\n"
    "    for i in range(500):\n"
    "        (sub / f'f{i:04}.csv').write_bytes(b'%d,%d\\n' % (d, i))\n"
)


def _watcher(tmp_path: Path, state: StateStore, **overrides: object) -> DataSide:
    (tmp_path / "data").mkdir(exist_ok=True)
    dw = DataSide(make_config(tmp_path, **overrides), state, follow_interval=0.1)
    dw.start()
    return dw


def _kinds(state: StateStore) -> list[str]:
    return [e.kind for e in state.events()]


def _wait_runs(dw: DataSide, tmp_path: Path, n: int) -> None:
    drive(dw, lambda: len(runs(tmp_path)) >= n and not dw.outbox.following())


@pytest.mark.parametrize(
    ("current", "files", "last", "pending", "verdict"),
    [
        ("h1", 0, None, [], "empty"),
        ("h1", 3, None, [], "trigger"),
        ("h1", 3, "h1", [], "unchanged"),
        ("h2", 3, "h1", [], "trigger"),
        ("h2", 3, "h1", ["h2"], "queued"),
        ("h1", 3, "h1", ["h2"], "unchanged"),
    ],
)
def test_decide_table(
    current: str, files: int, last: str | None, pending: list[str], verdict: str
) -> None:
    """Trigger only when the hash differs from the last delivered one and is not queued."""
    assert verdict == decide(current, files, last, pending)


def test_atomic_save_triggers_once_and_same_bytes_never(tmp_path: Path, state: StateStore) -> None:
    """write tmp → os.replace is seen; rewriting identical bytes or touching is not a change."""
    dw = _watcher(tmp_path, state)
    settle(dw)
    assert [] == runs(tmp_path)
    assert "data.empty" in _kinds(state)
    data = tmp_path / "data"
    (data / "iris.csv.tmp").write_text("a,b\n1,2\n")
    (data / "iris.csv.tmp").replace(data / "iris.csv")
    _wait_runs(dw, tmp_path, 1)
    h1 = compute_manifest(data).dataset_hash
    assert [h1] == runs(tmp_path)
    (data / "iris.csv").write_text("a,b\n1,2\n")  # same bytes
    (data / "iris.csv").touch()
    settle(dw)
    assert [h1] == runs(tmp_path)
    kinds = _kinds(state)
    assert 1 == kinds.count("trigger.delivered")
    assert 1 == kinds.count("run.succeeded")
    dw.stop()


def test_moved_in_file_and_dir(tmp_path: Path, state: StateStore) -> None:
    """A file and a directory moved in from outside the watch each trigger once."""
    dw = _watcher(tmp_path, state)
    outside = tmp_path / "outside"
    (outside / "batch").mkdir(parents=True)
    (outside / "one.csv").write_text("1\n")
    (outside / "batch" / "two.csv").write_text("2\n")
    (outside / "one.csv").rename(tmp_path / "data" / "one.csv")
    _wait_runs(dw, tmp_path, 1)
    (outside / "batch").rename(tmp_path / "data" / "batch")
    _wait_runs(dw, tmp_path, 2)
    assert compute_manifest(tmp_path / "data").dataset_hash == runs(tmp_path)[-1]
    assert 2 == len(set(runs(tmp_path)))
    dw.stop()


@pytest.mark.slow
def test_burst_of_10000_files_is_one_trigger(tmp_path: Path, state: StateStore) -> None:
    """10,000 files written in a burst → one trigger; event bookkeeping stays O(1)."""
    # A 5 s quiet period: a writer paused by a busy box must not split the burst in two.
    dw = _watcher(tmp_path, state, watch__quiet_period="5.0", watch__max_wait="120")
    settle(dw)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        data = tmp_path / "data"
        # Written by another process, so only the watcher's own allocations are traced here.
        subprocess.run([sys.executable, "-c", WRITE_10K, str(data)], check=True)
        drive(dw, lambda: (b := dw.fs.recorder.peek()) is not None and b.events >= 10_000)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ours = [tracemalloc.Filter(True, "*/watcher/data/fswatch.py")]
    grown = sum(
        s.size_diff
        for s in after.filter_traces(ours).compare_to(before.filter_traces(ours), "lineno")
    )
    assert grown < 16_000, f"event bookkeeping grew by {grown} bytes for 10,000 files"
    _wait_runs(dw, tmp_path, 1)
    settle(dw)
    assert [compute_manifest(data).dataset_hash] == runs(tmp_path)
    assert dw.status.last_files == 10_000
    dw.stop()


def test_data_dir_deleted_and_recreated(tmp_path: Path, state: StateStore) -> None:
    """Deleting the watched dir is noticed; a re-created dir is watched again and triggers."""
    dw = _watcher(tmp_path, state)
    data = tmp_path / "data"
    (data / "a.csv").write_text("1\n")
    _wait_runs(dw, tmp_path, 1)
    shutil.rmtree(data)
    drive(dw, lambda: dw.fs.problem() is not None or not dw.fs.watching, timeout=5)
    data.mkdir()
    drive(dw, lambda: dw.fs.watching and dw.fs.problem() is None, timeout=5)
    (data / "b.csv").write_text("2\n")
    _wait_runs(dw, tmp_path, 2)
    assert compute_manifest(data).dataset_hash == runs(tmp_path)[-1]
    assert dw.fs.rebuilds >= 1
    dw.stop()


def test_polling_mode(tmp_path: Path, state: StateStore) -> None:
    """watch.mode = polling sees an atomic save through PollingObserver."""
    dw = _watcher(tmp_path, state, watch__mode="polling")
    assert "polling" == dw.fs.active_mode
    data = tmp_path / "data"
    (data / "x.part").write_text("x\n")
    (data / "x.part").replace(data / "x.csv")
    _wait_runs(dw, tmp_path, 1)
    assert [compute_manifest(data).dataset_hash] == runs(tmp_path)
    dw.stop()


def test_auto_falls_back_to_polling_on_inotify_limit(
    tmp_path: Path, state: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    """OSError(28) from inotify (the kernel limit, simulated) → polling, log names the sysctl."""

    class Exhausted(PollingObserver):
        def start(self) -> None:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

    config = make_config(tmp_path)
    (tmp_path / "data").mkdir()
    dw = DataSide(config, state, observer_factory=Exhausted, follow_interval=0.1)
    dw.start()
    assert "polling" == dw.fs.active_mode
    assert "fs.inotify.max_user_watches" in (dw.fs.fallback_reason or "")
    (tmp_path / "data" / "a.csv").write_text("1\n")
    _wait_runs(dw, tmp_path, 1)
    dw.stop()


def test_dead_emitter_is_rebuilt(tmp_path: Path, state: StateStore) -> None:
    """A watch whose emitter thread stopped is detected and rebuilt; changes still trigger."""
    dw = _watcher(tmp_path, state)
    settle(dw)
    assert dw.fs._observer is not None
    for emitter in list(dw.fs._observer.emitters):
        emitter.stop()
        emitter.join(5)
    assert "emitter thread died" == dw.fs.problem()
    (tmp_path / "data" / "a.csv").write_text("1\n")
    _wait_runs(dw, tmp_path, 1)
    assert dw.fs.rebuilds >= 1 and dw.fs.problem() is None
    dw.stop()


def test_changed_while_down_triggers_once_at_startup(tmp_path: Path, state: StateStore) -> None:
    """A restart with unchanged data does nothing; data changed while down → one trigger."""
    dw = _watcher(tmp_path, state)
    (tmp_path / "data" / "a.csv").write_text("1\n")
    _wait_runs(dw, tmp_path, 1)
    dw.stop()
    again = _watcher(tmp_path, state)
    settle(again)
    again.stop()
    assert 1 == len(runs(tmp_path))
    (tmp_path / "data" / "a.csv").write_text("2\n")
    third = _watcher(tmp_path, state)
    _wait_runs(third, tmp_path, 2)
    settle(third)
    third.stop()
    assert 2 == len(runs(tmp_path))
    queued = [e for e in state.events() if e.kind == "trigger.queued"]
    assert "changed_while_down" == queued[-1].payload["reason"]


def test_all_ignored_dir_never_triggers(tmp_path: Path, state: StateStore) -> None:
    """Only ignored files (dotfiles, *.tmp, *~) → logged as empty, no trigger."""
    dw = _watcher(tmp_path, state)
    data = tmp_path / "data"
    (data / ".DS_Store").write_text("x")
    (data / "draft.tmp").write_text("x")
    (data / "notes~").write_text("x")
    settle(dw)
    assert [] == runs(tmp_path)
    assert "data.empty" in _kinds(state)
    dw.stop()
