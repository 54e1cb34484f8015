"""Exactly-once across a crash: kill -9 of `watcher run` between outbox commit and delivery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.lineage import compute_manifest
from tests.data.conftest import RECORD_RUN, runs, runs_ended
from tests.reliability.conftest import wait_for
from tests.runtime.conftest import wait_heartbeat
from watcher.runtime.state import open_state


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    env.update(
        {
            "WATCHER_WATCH__DATA_DIR": str(tmp_path / "data"),
            "WATCHER_STATE__DIR": str(tmp_path / "state"),
            "WATCHER_WATCH__QUIET_PERIOD": "0.3",
            "WATCHER_TRIGGER__BACKEND": "command",
            "WATCHER_TRIGGER__COMMAND": json.dumps(
                [sys.executable, "-c", RECORD_RUN, str(tmp_path / "runs.txt")]
            ),
            "WATCHER_LOG__FORMAT": "json",
            **extra,
        }
    )
    return env


def _start(tmp_path: Path, **extra: str) -> subprocess.Popen[bytes]:
    with (tmp_path / "watcher.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "watcher.cli", "run"],
            cwd=tmp_path,
            env=_env(tmp_path, **extra),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )


@pytest.mark.slow
def test_kill9_after_outbox_write_then_restart_gives_one_run(tmp_path: Path) -> None:
    """SIGKILL right after the trigger row commits (fault hook) → restart delivers it once."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "iris.csv").write_text("a,b\n1,2\n")
    expected = compute_manifest(data).dataset_hash

    crashed = _start(tmp_path, WATCHER_FAULT="after_outbox_write")
    assert -signal.SIGKILL == crashed.wait(timeout=60), (tmp_path / "watcher.log").read_text()
    assert [] == runs(tmp_path)
    state = open_state(tmp_path / "state")
    try:
        rows = state.conn.execute("SELECT run_id, status FROM outbox").fetchall()
    finally:
        state.close()
    assert [(f"data__{expected}", "pending")] == [tuple(r) for r in rows]

    proc = _start(tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not runs(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        # Positive marker instead of a pause: a heartbeat written after the run is in
        # means the loop made a full pass (deliveries included) since.
        wait_heartbeat(tmp_path / "state", after=time.time())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:  # a slow stop elsewhere must not hide the result
            proc.kill()
            proc.wait(timeout=10)
    wait_for(lambda: runs_ended(tmp_path / "state"), 60, "every started run to end")
    assert [expected] == runs(tmp_path)
    state = open_state(tmp_path / "state")
    try:
        kinds = [e.kind for e in state.events()]
    finally:
        state.close()
    assert 1 == kinds.count("trigger.queued")
    assert 1 == kinds.count("trigger.delivered")
