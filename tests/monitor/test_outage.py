"""Killing the MLflow server mid-run: the daemon keeps running, reports, and resumes.

Uses its own `mlflow server` (killing the shared session server would break other
tests), the real APScheduler poll job, the real daemon loop and a file channel.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alerts.notifiers.file import FileNotifier
from tests.services.mlflow_server import MlflowServer
from watcher.backends.mlflow_registry import MlflowRegistry
from watcher.config import Config
from watcher.monitor.poll import MLFLOW_DOWN_ALERT, Monitor
from watcher.runtime.alerting import Alerting
from watcher.runtime.clock import SystemClock
from watcher.runtime.daemon import Daemon
from watcher.runtime.http import HttpEndpoint
from watcher.runtime.sdnotify import SystemdNotifier
from watcher.runtime.state import StateStore

pytestmark = [pytest.mark.service, pytest.mark.slow]


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(0.2)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MlflowServer]:
    srv = MlflowServer(tmp_path)
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


def healthz(http: HttpEndpoint) -> tuple[int, dict[str, Any]]:
    host, port = http.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_daemon_survives_mlflow_outage(
    server: MlflowServer, state: StateStore, tmp_path: Path
) -> None:
    """Outage logged once, alerted after mlflow_down_alert_after, polling resumes on return."""
    setup = MlflowRegistry(server.url)
    setup.client.create_registered_model("outage-model")
    setup.client.create_model_version("outage-model", source="s3://watcher-test/m")
    setup.set_production("outage-model", "1")

    config = Config.model_validate(
        {
            "monitor": {
                "models": ["outage-*"],
                "poll_interval": "1s",
                "mlflow_down_alert_after": "2s",
            }
        }
    )
    clock = SystemClock()
    alerts_file = tmp_path / "alerts.jsonl"
    alerting = Alerting(config, state, clock, notifiers=[FileNotifier(alerts_file)])
    registry = MlflowRegistry(server.url, max_retries=0, timeout=2)
    mon = Monitor(config.monitor, state, registry, None, alerting, clock=clock)
    http = HttpEndpoint("127.0.0.1:0", [])
    daemon = Daemon(state, [alerting, mon, http], clock=clock, notifier=SystemdNotifier(env={}))
    http.components = daemon.components
    thread = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    thread.start()

    def kinds() -> list[str]:
        return [e.kind for e in state.events() if e.kind.startswith("registry.")]

    def sent() -> list[str]:
        if not alerts_file.exists():
            return []
        rows = [json.loads(line) for line in alerts_file.read_text().splitlines()]
        return [r["kind"] for r in rows if r["labels"]["alertname"] == MLFLOW_DOWN_ALERT]

    try:
        wait_for(lambda: "registry.model_watched" in kinds(), 60, "first poll")
        server.kill()
        wait_for(lambda: ["firing"] == sent(), 60, "MlflowUnreachable firing")
        assert thread.is_alive()
        assert mon.health().detail["mlflow_reachable"] is False
        # /healthz says so (503, failing: monitor), while liveness (the watchdog) stays ok.
        wait_for(lambda: 503 == healthz(http)[0], 10, "/healthz 503")
        assert "monitor" in healthz(http)[1]["failing"]
        assert mon.health().ok
        # Two more failed polls handled (positive marker): still one outage event.
        failures: list[object] = []

        def another_failure() -> bool:
            last = mon._last_poll
            if last is not None and last.snapshots is None and last not in failures:
                failures.append(last)
            return len(failures) >= 3

        wait_for(another_failure, 60, "two more failed polls")
        server.start()
        wait_for(lambda: "registry.reachable" in kinds(), 60, "polling resumed")
        wait_for(lambda: ["firing", "resolved"] == sent(), 30, "MlflowUnreachable resolved")
        assert thread.is_alive()
        assert 1 == kinds().count("registry.unreachable")
        assert mon.health().detail["mlflow_reachable"] is True
        wait_for(lambda: 200 == healthz(http)[0], 10, "/healthz 200 again")
    finally:
        daemon.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
