"""Helpers for the data-watching tests: a config on tmp dirs and a run-counting command."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from watcher.config import Config, load_config
from watcher.datawatch import DataWatcher
from watcher.state import StateStore, open_state

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


def drive(dw: DataWatcher, until: Callable[[], bool], timeout: float = 20.0) -> None:
    """Tick the watcher like the daemon loop does until ``until()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        wait = dw.tick()
        if until():
            return
        time.sleep(min(max(wait, 0.01), 0.05))
    raise AssertionError(f"condition not reached within {timeout} s")


def settle(dw: DataWatcher, seconds: float) -> None:
    """Tick for a while (to show that nothing happens)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        dw.tick()
        time.sleep(0.05)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = open_state(tmp_path / "state")
    yield store
    store.close()
