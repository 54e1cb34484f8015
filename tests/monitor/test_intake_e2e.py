"""The intake inside a real `watcher run` (#18), against a real `mlflow server` holding a
Production version trained by the real pipeline: reports posted with `watcher
report-accuracy --via-daemon` fire ModelAccuracyLow within seconds although the poll
interval is an hour (the intake hints the monitor); a report acknowledged with 202 is
counted after the daemon is killed with SIGKILL right after and started again."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.monitor.test_acceptance import REPO, train
from tests.runtime.conftest import (
    WATCHER,
    NotifySocket,
    free_port,
    start_watcher,
    stop_watcher,
)
from watcher.monitor.accuracy import ACCURACY_ALERT

pytestmark = pytest.mark.service
TOKEN = "e2e-intake-token-0123456789abcdef"
MODEL = "intake-iris"
DEADLINE = 120.0  # seconds for anything the daemon does on a loaded box


def wait_until(what: str, probe: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := probe():
            return got
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout} s")


def db(cwd: Path) -> sqlite3.Connection:
    return sqlite3.connect(cwd / ".watcher" / "state.db", timeout=30)


def live(cwd: Path) -> tuple[Any, Any] | None:
    with db(cwd) as conn:
        row = conn.execute(
            "SELECT live_value, live_samples FROM registry_models WHERE model = ?", (MODEL,)
        ).fetchone()
    return None if row is None or row[1] is None else (row[0], row[1])


def firing(cwd: Path) -> bool:
    path = cwd / ".watcher" / "alerts.jsonl"
    if not path.exists():
        return False
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return any(
        r["kind"] == "firing" and r["labels"].get("alertname") == ACCURACY_ALERT for r in rows
    )


def cli(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")} | env
    return subprocess.run(
        [WATCHER, "report-accuracy", "--via-daemon", "--model", MODEL, *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def test_reports_via_the_daemon_alert_at_once_and_survive_a_kill(
    mlflow_server: str, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    shutil.copytree(REPO / "examples" / "data", tmp_path / "train-data")
    train(mlflow_server, tmp_path / "train-data", MODEL)
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/accuracy"
    env = {
        "WATCHER_MLFLOW__TRACKING_URI": mlflow_server,
        "WATCHER_HTTP__LISTEN": f"127.0.0.1:{port}",
        "WATCHER_HTTP__TOKEN": TOKEN,
        "WATCHER_MONITOR__MODELS": MODEL,
        "WATCHER_MONITOR__POLL_INTERVAL": "1h",  # only the first poll and the hints run
    }
    proc = start_watcher(tmp_path, notify_socket, extra_env=env)
    try:
        notify_socket.wait_for("READY=1", timeout=DEADLINE)
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789abcdef"}):
            body = {"model": MODEL, "accuracy": 0.5, "samples": 200}
            resp = httpx.post(url, json=body, headers=headers, timeout=30)
            assert 401 == resp.status_code, resp.text
        auth = {"Authorization": f"Bearer {TOKEN}"}
        resp = httpx.post(url, content=b"{" + b" " * 20_000 + b"}", headers=auth, timeout=30)
        assert 413 == resp.status_code

        # Bad input: exit 2, the field named as the CLI's option; checked client-side
        # (a future time) or by the daemon (a version the registry does not have).
        ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        done = cli(tmp_path, env, "--accuracy", "0.5", "--samples", "200", "--at", ahead)
        assert 2 == done.returncode and "error: --at: " in done.stderr, done.stderr
        done = cli(tmp_path, env, "--version", "7", "--accuracy", "0.5", "--samples", "200")
        assert 2 == done.returncode, done.stderr
        assert f"--version: model '{MODEL}' has no version 7 (the daemon at {url})" in done.stderr

        started = time.monotonic()
        done = cli(tmp_path, env, "--accuracy", "0.5", "--samples", "200")
        assert 0 == done.returncode, done.stderr
        assert f"{MODEL} v1: accuracy 0.5 over 200 samples" in done.stdout
        assert "(intake #1)" in done.stdout
        wait_until("ModelAccuracyLow firing", lambda: firing(tmp_path))
        took = time.monotonic() - started
        assert (0.5, 200) == live(tmp_path)

        # Acknowledged, then killed at once: the row was committed before the 202.
        body = {"model": MODEL, "version": "1", "accuracy": 0.6, "samples": 300}
        resp = httpx.post(url, json=body, headers=auth, timeout=30)
        proc.kill()
        assert 202 == resp.status_code, resp.text
        proc.wait(timeout=30)
    finally:
        out = stop_watcher(proc)
    with db(tmp_path) as conn:
        rows = conn.execute("SELECT id, value, samples FROM intake_observations").fetchall()
        assert [(1, 0.5, 200), (resp.json()["id"], 0.6, 300)] == rows
        # What the restarted daemon computes, not what the killed one may have saved.
        conn.execute("UPDATE registry_models SET live_value = NULL, live_samples = NULL")

    down = cli(tmp_path, env, "--accuracy", "0.5", "--samples", "200")
    assert 1 == down.returncode and url in down.stderr and TOKEN not in down.stderr, down.stderr

    proc = start_watcher(tmp_path, notify_socket, extra_env=env)
    try:
        notify_socket.wait_for("READY=1", timeout=DEADLINE)
        value, samples = wait_until("the window after restart", lambda: live(tmp_path))
        assert 500 == samples
        assert abs(value - (0.5 * 200 + 0.6 * 300) / 500) < 1e-9
    finally:
        out += stop_watcher(proc)
    assert TOKEN not in out
    print(f"report to ModelAccuracyLow firing: {took:.1f} s")


def test_a_breach_reported_to_the_intake_rolls_back(
    mlflow_server: str, tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """rollback.auto: v2 breaching on intake reports → Production back on v1, at once."""
    model = "intake-rollback"
    shutil.copytree(REPO / "examples" / "data", tmp_path / "train-data")
    train(mlflow_server, tmp_path / "train-data", model)  # v1
    train(mlflow_server, tmp_path / "train-data", model)  # v2, Production (was v1)
    port = free_port()
    env = {
        "WATCHER_MLFLOW__TRACKING_URI": mlflow_server,
        "WATCHER_HTTP__LISTEN": f"127.0.0.1:{port}",
        "WATCHER_HTTP__TOKEN": TOKEN,
        "WATCHER_MONITOR__MODELS": model,
        "WATCHER_MONITOR__POLL_INTERVAL": "1h",
        "WATCHER_ROLLBACK__AUTO": "true",
    }
    proc = start_watcher(tmp_path, notify_socket, extra_env=env)
    try:
        notify_socket.wait_for("READY=1", timeout=DEADLINE)
        body = {"model": model, "version": "2", "accuracy": 0.4, "samples": 500}
        auth = {"Authorization": f"Bearer {TOKEN}"}
        url = f"http://127.0.0.1:{port}/v1/accuracy"
        assert 202 == httpx.post(url, json=body, headers=auth, timeout=30).status_code

        def production() -> str | None:
            with db(tmp_path) as conn:
                row = conn.execute(
                    "SELECT to_version FROM rollback_journal WHERE model = ? AND step = 'done'",
                    (model,),
                ).fetchone()
            return None if row is None else str(row[0])

        assert "1" == wait_until("the rollback to v1", production)
    finally:
        out = stop_watcher(proc)
    assert TOKEN not in out
