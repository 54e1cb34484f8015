"""Registry webhooks end to end: a real `mlflow server` (the session one, which allows
webhooks to 127.0.0.1 over http) delivering to a real `watcher run`.

- An alias moved in MLflow reaches the history and /metrics through a delivered webhook
  with poll_interval and reconcile_interval at 1 h: nothing else could have seen it.
- Forged, replayed, stale and oversized POSTs to the daemon are refused.
- With the webhook's secret wrong in MLflow, health says fallback and the poll
  (every poll_interval) still catches the move.
- `watcher webhooks install | status | remove` against the server.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.webhooks.delivery import _generate_hmac_signature

from tests.reliability.conftest import (
    WATCHER,
    closed_port,
    daemon_env,
    db,
    start_daemon,
    stop_daemon,
    wait_for,
)
from tests.services.mlflow_server import free_port
from watcher.backends.mlflow_registry import MlflowRegistry
from watcher.backends.mlflow_webhooks import MlflowWebhooks

SECRET = "mlflow-hook-7c2f9e1a"
DEADLINE = 120.0  # seconds: a loaded box; a 1 h poll could never be that quick


@dataclass
class Daemon:
    root: Path
    env: dict[str, str]
    base: str  # http://127.0.0.1:PORT
    model: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def hook_url(self) -> str:
        return f"{self.base}/hooks/mlflow"

    def log(self) -> str:
        path = self.root / "watcher.log"
        return path.read_text()[-4000:] if path.exists() else ""


def _model(server: str) -> str:
    """A model with two versions, Production (the alias) on v1."""
    name = f"hooked-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(server, server)
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source="s3://unused-bucket/hooked")
    client.set_registered_model_alias(name, "production", "1")
    return name


def _daemon(root: Path, server: str, *, poll: str, secret: str = SECRET) -> Daemon:
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    port = free_port()
    name = _model(server)
    env = daemon_env(
        root,
        WATCHER_MLFLOW__TRACKING_URI=server,
        WATCHER_MLFLOW__MAX_RETRIES="2",
        WATCHER_MLFLOW__REQUEST_TIMEOUT="30",
        WATCHER_MONITOR__MODELS=name,
        WATCHER_MONITOR__POLL_INTERVAL=poll,
        WATCHER_MONITOR__RECONCILE_INTERVAL="1h",
        WATCHER_MONITOR__MLFLOW_DOWN_ALERT_AFTER="1h",
        WATCHER_MONITOR__WEBHOOKS__SECRET=secret,
        WATCHER_HTTP__LISTEN=f"127.0.0.1:{port}",
    )
    return Daemon(root, env, f"http://127.0.0.1:{port}", name)


def _cli(daemon: Daemon, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [*WATCHER, *argv],
        cwd=daemon.root,
        env=env or daemon.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def _monitor(daemon: Daemon) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{daemon.base}/healthz", timeout=10) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503 while something is failing
        doc = json.loads(exc.read())
    except OSError:
        return {}
    monitor: dict[str, Any] = doc["checks"].get("monitor", {})
    return monitor


def _events(daemon: Daemon, kind: str) -> list[tuple[str, str | None]]:
    if not (daemon.root / "state" / "state.db").exists():
        return []
    conn = db(daemon.root)
    try:
        rows = conn.execute(
            "SELECT model, version FROM events WHERE kind = ? AND model = ?", (kind, daemon.model)
        ).fetchall()
    except Exception:
        return []
    finally:
        conn.close()
    return [(str(m), v) for m, v in rows]


def _metric(daemon: Daemon, line_start: str) -> float | None:
    text = httpx.get(f"{daemon.base}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def _stop(daemon: Daemon, server: str) -> None:
    if daemon.proc is not None:
        assert 0 == stop_daemon(daemon.proc), daemon.log()
    MlflowWebhooks(MlflowRegistry(server)).remove(daemon.hook_url)


@pytest.fixture(scope="module")
def hooked(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A daemon whose only way to learn of a change within the hour is a webhook: the
    webhook is installed (its test fails: the daemon is not up yet), then the daemon
    starts, checks it (a test delivery reaching it) and polls only hourly."""
    daemon = _daemon(tmp_path_factory.mktemp("hooked"), mlflow_server, poll="1h")
    code, out, err = _cli(daemon, "webhooks", "install", "--json")
    assert 0 == code, err
    installed = json.loads(out)
    assert installed["created"] and not installed["test"]["success"]
    daemon.proc = start_daemon(daemon.root, daemon.env)
    try:
        wait_for(
            lambda: _monitor(daemon).get("webhooks") == "healthy",
            DEADLINE,
            f"webhooks healthy: {_monitor(daemon)}",
            poll=0.5,
        )
        yield daemon
    finally:
        _stop(daemon, mlflow_server)


def test_an_alias_move_arrives_by_webhook(hooked: Daemon, mlflow_server: str) -> None:
    """Production moved in MLflow → a history event and the production gauge, long
    before the hourly poll: the delivered webhook is the only path that can do it."""
    watched = ("registry.model_watched", hooked.model)
    assert [(hooked.model, "1")] == _events(hooked, watched[0])
    started = time.monotonic()
    MlflowClient(mlflow_server, mlflow_server).set_registered_model_alias(
        hooked.model, "production", "2"
    )
    wait_for(
        lambda: bool(_events(hooked, "registry.production_changed")),
        DEADLINE,
        f"the move in the history\n{hooked.log()}",
        poll=0.2,
    )
    took = time.monotonic() - started
    assert took < 3600
    assert 2.0 == _metric(hooked, f'watcher_production_version{{model="{hooked.model}"}}')
    assert (_metric(hooked, 'watcher_webhook_deliveries_total{outcome="accepted"}') or 0) >= 1
    code, out, err = _cli(hooked, "history", "--json", "--model", hooked.model)
    assert 0 == code, err
    kinds = [json.loads(line)["kind"] for line in out.splitlines() if line.strip()]
    assert "registry.production_changed" in kinds
    assert "healthy" == _monitor(hooked)["webhooks"]


def _post(
    daemon: Daemon, body: bytes, *, secret: str = SECRET, age: int = 0, did: str | None = None
) -> httpx.Response:
    did = did or str(uuid.uuid4())
    ts = str(int(time.time()) - age)
    signature = _generate_hmac_signature(secret, did, ts, body.decode())
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": did,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": signature,
    }
    return httpx.post(daemon.hook_url, content=body, headers=headers, timeout=30)


def test_forged_replayed_stale_and_oversized_are_refused(hooked: Daemon) -> None:
    """Real POSTs to the daemon: only a correctly signed, fresh, first delivery counts."""
    body = json.dumps(
        {
            "entity": "model_version_alias",
            "action": "created",
            "timestamp": "2026-01-01T00:00:00+00:00",
            "data": {"name": hooked.model, "alias": "production", "version": "1"},
        }
    ).encode()
    forged = _post(hooked, body, secret="not-the-secret")
    assert (401, "X-MLflow-Signature does not match") == (
        forged.status_code,
        forged.json()["error"],
    )
    stale = _post(hooked, body, age=3600)
    assert 400 == stale.status_code
    assert "X-MLflow-Timestamp" in stale.json()["error"]
    unsigned = httpx.post(hooked.hook_url, content=body, timeout=30)
    assert 401 == unsigned.status_code
    huge = _post(hooked, b"{" + b" " * (70 * 1024) + b"}")
    assert 413 == huge.status_code
    did = str(uuid.uuid4())
    assert 202 == _post(hooked, body, did=did).status_code
    replay = _post(hooked, body, did=did)
    assert (200, "duplicate") == (replay.status_code, replay.json()["status"])
    assert (_metric(hooked, 'watcher_webhook_deliveries_total{outcome="refused"}') or 0) >= 3
    assert (_metric(hooked, 'watcher_webhook_deliveries_total{outcome="duplicate"}') or 0) >= 1
    assert SECRET not in hooked.log()


def test_with_the_webhook_broken_the_poll_still_catches_the_move(
    mlflow_server: str, tmp_path: Path
) -> None:
    """MLflow holds another secret: its test delivery is refused (401), health says
    fallback and why, and the poll (every poll_interval, 2 s) sees the move anyway."""
    daemon = _daemon(tmp_path / "broken", mlflow_server, poll="2s")
    MlflowWebhooks(MlflowRegistry(mlflow_server)).install(daemon.hook_url, "another-secret")
    daemon.proc = start_daemon(daemon.root, daemon.env)
    try:
        wait_for(
            lambda: (
                _monitor(daemon).get("webhooks") == "fallback"
                and "refused" in str(_monitor(daemon).get("webhooks_reason"))
            ),
            DEADLINE,
            f"webhooks fallback: {_monitor(daemon)}",
            poll=0.5,
        )
        MlflowClient(mlflow_server, mlflow_server).set_registered_model_alias(
            daemon.model, "production", "2"
        )
        wait_for(
            lambda: bool(_events(daemon, "registry.production_changed")),
            DEADLINE,
            f"the move in the history\n{daemon.log()}",
            poll=0.2,
        )
        assert (_metric(daemon, 'watcher_webhook_deliveries_total{outcome="refused"}') or 0) >= 1
        code, out, _err = _cli(daemon, "status")
        assert 0 == code
        assert "fallback to monitor.poll_interval" in out
        logged = [json.loads(x) for x in daemon.log().splitlines() if x.startswith("{")]
        assert 1 == sum(1 for e in logged if e.get("event") == "webhooks_fallback")
    finally:
        _stop(daemon, mlflow_server)


def test_webhooks_cli_against_the_server(mlflow_server: str, tmp_path: Path) -> None:
    """install creates, then updates the same webhook; status shows it; remove deletes
    ours only; no secret → exit 2; MLflow unreachable → exit 1."""
    daemon = _daemon(tmp_path / "cli", mlflow_server, poll="30s")
    theirs_url = f"http://127.0.0.1:{closed_port()}/theirs"
    client = MlflowClient(mlflow_server, mlflow_server)
    theirs = client.create_webhook("team-hook", theirs_url, ["model_version.created"])
    try:
        code, out, err = _cli(daemon, "webhooks", "install", "--json")
        assert 0 == code, err
        first = json.loads(out)
        code, out, err = _cli(daemon, "webhooks", "install", "--json")
        again = json.loads(out)
        assert (True, False) == (first["created"], again["created"])
        assert first["webhook"]["id"] == again["webhook"]["id"]
        code, out, err = _cli(daemon, "webhooks", "status", "--json")
        shown = json.loads(out)["webhook"]
        assert (daemon.hook_url, "ACTIVE") == (shown["url"], shown["status"])
        assert "model_version_alias.created" in shown["events"]
        code, out, err = _cli(daemon, "webhooks", "status")
        assert 0 == code and daemon.hook_url in out and SECRET not in out + err
        code, out, err = _cli(daemon, "webhooks", "remove", "--json")
        assert [first["webhook"]["id"]] == json.loads(out)["removed"]
        assert json.loads(_cli(daemon, "webhooks", "status", "--json")[1])["webhook"] is None
        assert theirs.webhook_id in {h.webhook_id for h in client.list_webhooks()}
        no_secret = {k: v for k, v in daemon.env.items() if "WEBHOOKS__SECRET" not in k}
        code, _out, err = _cli(daemon, "webhooks", "status", env=no_secret)
        assert 2 == code and "monitor.webhooks.secret" in err
        down = {**daemon.env, "WATCHER_MLFLOW__TRACKING_URI": f"http://127.0.0.1:{closed_port()}"}
        code, _out, err = _cli(daemon, "webhooks", "install", env=down)
        assert 1 == code and "Traceback" not in err
    finally:
        client.delete_webhook(theirs.webhook_id)
