"""Helpers for the data-watching tests: a config on tmp dirs, a run-counting command and a
trigger backend that can be switched off."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcher.app import build_data_side
from watcher.config import Config, load_config
from watcher.data.fswatch import Batch
from watcher.runtime.component import Component, Health
from watcher.runtime.state import StateStore
from watcher.testing import OutageTrigger

if TYPE_CHECKING:
    from watcher.data.fswatch import FsWatch
    from watcher.data.hashing import IncrementalHasher
    from watcher.data.watcher import _Status
    from watcher.runtime.clock import Clock
    from watcher.trigger.outbox import Outbox

__all__ = ["OutageTrigger"]  # tests import it from here too

# The `command` backend target: appends the data hash it was given to a file.
RECORD_RUN = (
    "import json, sys\n"
    "conf = json.load(sys.stdin)\n"
    "with open(sys.argv[1], 'a') as fh:\n"
    "    fh.write(conf['data_hash'] + '\\n')\n"
)


def make_config(tmp_path: Path, **overrides: object) -> Config:
    values: dict[str, object] = {
        "watch.data_dir": str(tmp_path / "data"),
        "state.dir": str(tmp_path / "state"),
        "watch.quiet_period": "0.3",
        "watch.max_wait": "5",
        "watch.polling_interval": "0.2",
        "trigger.backend": "command",
        "trigger.command": [sys.executable, "-c", RECORD_RUN, str(tmp_path / "runs.txt")],
        "trigger.retry_initial": "0.2",
        "trigger.retry_max": "1",
    }
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    return load_config(None, env={}, overrides=values)


def runs(tmp_path: Path) -> list[str]:
    """Data hashes the command backend was run with, in order."""
    path = tmp_path / "runs.txt"
    return path.read_text().split() if path.exists() else []


def runs_ended(state_dir: Path) -> bool:
    """Every run a child backend (local, command) started has written its exit file: once
    the daemon has stopped too, nothing more can be appended to ``runs.txt``."""
    runs_dir = state_dir / "runs"
    started = runs_dir.glob("*.started") if runs_dir.is_dir() else []
    return all(p.with_suffix(".exit").exists() for p in started)


class DataSide:
    """The data watcher and the delivery of its triggers (built as the app builds them),
    driven together like the daemon loop drives them; the trigger defaults to the config's."""

    def __init__(self, config: Config, state: StateStore, **options: Any) -> None:
        """``options``: those of :func:`watcher.app.build_data_side` (trigger, hooks, ...)."""
        self.data, self.delivery = build_data_side(config, state, **options)
        self.state = state
        self.outbox: Outbox = self.data.outbox
        self.status: _Status = self.data.status
        self.root: Path = self.data.root
        self.fs: FsWatch = self.data.fs
        self.hasher: IncrementalHasher = self.data.hasher
        self.clock: Clock = self.data.clock

    @property
    def components(self) -> list[Component]:
        """Both, in start order, for a Daemon or an HttpEndpoint."""
        return [self.data, self.delivery]

    @property
    def scan_at(self) -> float | None:
        return self.data.tree.scan_at

    def start(self) -> None:
        self.data.start()
        self.delivery.start()

    def tick(self) -> float:
        return min(self.data.tick(), self.delivery.tick())

    def health(self) -> Health:
        return self.data.health()

    def stop(self) -> None:
        self.delivery.stop()
        self.data.stop()


def drive(dw: DataSide, until: Callable[[], bool], timeout: float = 20.0) -> None:
    """Tick the watcher like the daemon loop does until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wait = dw.tick()
        if until():
            return
        time.sleep(min(max(wait, 0.01), 0.05))
    raise AssertionError(f"condition not reached within {timeout} s")


def settle(dw: DataSide, timeout: float = 30.0) -> None:
    """Tick until everything that happened before this call has been handled, so a test can
    assert that nothing (more) came of it. The positive marker: a directory made and removed
    in the data dir after those changes (inotify delivers events in order, and an empty dir
    leaves the dataset hash as it was) is seen in a change batch, that batch's scan has
    finished, no batch is pending, no scan is due (a held trigger's retry may be scheduled)
    and every delivered run has ended."""
    marker = dw.root / f"settle-{uuid.uuid4().hex}"
    seen = threading.Event()
    take = dw.fs.recorder.take

    def spy() -> Batch | None:
        batch = take()
        if batch is not None and any(p.startswith(str(marker)) for p in batch.sample):
            seen.set()
        return batch

    dw.fs.recorder.take = spy  # type: ignore[method-assign]
    try:
        marker.mkdir()
        marker.rmdir()
        drive(
            dw,
            lambda: (
                seen.is_set()
                and (dw.scan_at is None or dw.scan_at > dw.clock.monotonic())
                and dw.fs.batch_due() is None
                and not dw.outbox.following()
            ),
            timeout=timeout,
        )
    finally:
        del dw.fs.recorder.take


def change_while_down(
    dw: DataSide, trigger: OutageTrigger, path: Path, rows: list[str]
) -> list[str]:
    """Take the backend down, rewrite ``path`` once per row (x,y CSV), wait until each is
    hashed and delivery has been refused a few times; the dataset hashes, in order."""
    from pipeline.lineage import compute_manifest

    trigger.down = True
    hashes: list[str] = []
    for row in rows:
        path.write_text(f"x,y\n{row}\n")
        hashes.append(compute_manifest(path.parent).dataset_hash)
        drive(dw, lambda h=hashes[-1]: dw.status.last_hash == h)  # type: ignore[misc]
    drive(dw, lambda: trigger.refused >= 3, timeout=30)
    return hashes
