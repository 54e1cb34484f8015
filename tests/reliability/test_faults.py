"""Backends failing under the daemon: MLflow killed mid-rollback, trigger outages, webhook down.

Feature suites prove each piece alone (tests/monitor/test_outage.py: MLflow killed during
a poll; tests/trigger/test_airflow_e2e.py: one change during an Airflow outage;
tests/alerts/test_dispatcher.py: 500 x3 then 200). Here the daemon's own components
meet the faults together, and every check is "nothing lost, nothing twice, in order".
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from alerts import make_alert
from alerts.notifiers.webhook import verify_signature
from tests.data.conftest import (
    DataSide,
    OutageTrigger,
    change_while_down,
    drive,
    make_config,
    runs,
    settle,
)
from tests.services.airflow_server import STAND_IN_DAG_ID, AirflowServer
from tests.services.mlflow_server import MlflowServer, free_port
from watcher.app import build_trigger
from watcher.backends.mlflow_registry import MlflowRegistry
from watcher.errors import RegistryError
from watcher.ports import TAG_PREVIOUS
from watcher.rollback.journal import Plan, Rollbacker
from watcher.runtime.alerting import Alerting
from watcher.runtime.state import StateStore, open_state
from watcher.testing import FakeClock

# -- MLflow server killed and restarted in the middle of a rollback ---------------------


class _KillAfterMove(MlflowRegistry):
    """The real adapter, plus a fault: the server dies right after Production moved."""

    def __init__(self, url: str, on_move: Any) -> None:
        super().__init__(url, "alias", timeout=3, max_retries=0)
        self.on_move = on_move

    def set_production(self, name: str, version: str) -> None:
        super().set_production(name, version)
        self.on_move()


@pytest.fixture
def own_mlflow(tmp_path: Path) -> Iterator[MlflowServer]:
    """Our own server: killing it cannot disturb the session server other tests use."""
    root = tmp_path / "mlflow"
    root.mkdir()
    server = MlflowServer(root)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.service
@pytest.mark.slow
def test_mlflow_killed_mid_rollback_then_restart_completes_it(
    own_mlflow: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server is SIGKILLed between "Production moved" and the quarantine tags: the
    rollback fails with a registry error, the journal keeps it, and a fresh Rollbacker (a
    restarted daemon) finishes it once the server is back: one notification, Production
    present at every observation, the bad version quarantined."""
    from mlflow import MlflowClient

    url = own_mlflow.url
    # mlflow_client() writes these into os.environ; let monkeypatch restore them.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    client.create_registered_model("m")
    client.create_model_version("m", source="s3://unused-bucket/m/1", tags={"accuracy": "0.96"})
    client.create_model_version(
        "m", source="s3://unused-bucket/m/2", tags={"accuracy": "0.95", TAG_PREVIOUS: "1"}
    )
    client.set_registered_model_alias("m", "production", "2")

    state_dir = tmp_path / "state"
    cfg = make_config(tmp_path, **{"alerts.log": "false"})
    assert cfg.alerts_file == state_dir / "alerts.jsonl"
    state = open_state(state_dir)
    clock = FakeClock()
    alerting = Alerting(cfg, state, clock)
    registry = _KillAfterMove(url, own_mlflow.kill)
    plan = Plan("m", "2", "1", "live accuracy 0.61 < 0.90", "watcher")
    with pytest.raises(RegistryError, match="unreachable"):
        Rollbacker(registry, state, clock, alerting).execute(plan, automatic=True)
    assert 1 == len(Rollbacker(registry, state, clock).pending())
    state.close()

    own_mlflow.start()
    fresh = MlflowRegistry(url, "alias", timeout=5, max_retries=1)
    assert "1" == fresh.production("m"), "the move survived the crash"
    state = open_state(state_dir)
    try:
        alerting = Alerting(cfg, state, clock)
        outcomes = Rollbacker(fresh, state, clock, alerting).recover()
        alerting.tick()
        assert [True] == [o.recovered for o in outcomes]
        assert [] == Rollbacker(fresh, state, clock).pending()
        kinds = [e.kind for e in state.events()]
    finally:
        state.close()
    assert "1" == fresh.production("m")
    bad = fresh.get_version("m", "2")
    assert bad is not None and bad.quarantined
    assert ["rollback.started", "rollback.done"] == kinds
    notes = [json.loads(x) for x in cfg.alerts_file.read_text().splitlines()]
    assert ["ModelRolledBack"] == [n["labels"]["alertname"] for n in notes]


# -- Trigger backend down while the data changes twice ------------------------------------


def test_trigger_outage_with_two_changes_runs_each_delivered_hash_once_in_order(
    tmp_path: Path,
) -> None:
    """Backend down while the data changes A → B → C: retried with backoff, nothing runs;
    when it returns, exactly the current data (C) runs once — B was superseded before
    delivery and says so in the history; a later change D runs after C. Never a repeat."""
    from pipeline.lineage import compute_manifest

    cfg = make_config(tmp_path)
    data = cfg.watch.data_dir
    data.mkdir()
    state = open_state(cfg.state.dir)
    trigger = OutageTrigger(build_trigger(cfg))
    dw = DataSide(cfg, state, trigger=trigger, progress=False)
    try:
        dw.start()
        (data / "a.csv").write_text("x,y\n1,1\n")
        drive(dw, lambda: len(runs(tmp_path)) == 1)
        hashes = change_while_down(dw, trigger, data / "a.csv", ["2,2", "3,3"])
        assert 1 == len(runs(tmp_path))
        trigger.down = False
        drive(dw, lambda: len(runs(tmp_path)) == 2, timeout=30)
        (data / "a.csv").write_text("x,y\n4,4\n")
        last = compute_manifest(data).dataset_hash
        drive(dw, lambda: len(runs(tmp_path)) == 3, timeout=30)
        settle(dw)
        ran = runs(tmp_path)
        assert [hashes[1], last] == ran[1:]
        assert len(set(ran)) == len(ran)
        superseded = state.conn.execute(
            "SELECT data_hash FROM outbox WHERE status = 'superseded'"
        ).fetchall()
        assert [(hashes[0],)] == superseded
        kinds = [e.kind for e in state.events()]
        assert kinds.count("trigger.retrying") >= 1  # first failure and error changes only
    finally:
        dw.stop()
        state.close()


# -- The real Airflow api-server down while the data changes twice -----------------------


@pytest.mark.service
@pytest.mark.slow
@pytest.mark.timeout(600)  # an api-server restart and two real DAG runs on a 2-core box
def test_airflow_down_while_data_changes_twice_runs_each_hash_once_in_order(
    tmp_path: Path, airflow_server: AirflowServer
) -> None:
    """With snapshots: the api-server is down for several retry intervals while the data
    goes to A, then B. When it is back, Airflow gets exactly data__A then data__B, each
    run once, one after the other, each on a frozen copy that hashes to its data_hash."""
    from pipeline.lineage import compute_manifest

    tag = tmp_path.name  # distinct bytes from every other test on the shared server
    cfg = make_config(
        tmp_path,
        **{
            "trigger.backend": "airflow",
            "trigger.dag_id": STAND_IN_DAG_ID,
            "trigger.airflow.url": airflow_server.base_url,
            "trigger.airflow.username": airflow_server.username,
            "trigger.airflow.password": airflow_server.password,
            "trigger.airflow.timeout": "5",
            "watch.snapshot_dir": str(tmp_path / "snaps"),
        },
    )
    data = cfg.watch.data_dir
    data.mkdir()
    state = open_state(cfg.state.dir)
    dw = DataSide(cfg, state, follow_interval=1.0, progress=False)
    hashes: list[str] = []
    try:
        dw.start()
        airflow_server.stop_api_server()
        try:
            for row in ("1,1", "2,2"):
                (data / "a.csv").write_text(f"x,y,tag\n{row},{tag}\n")
                hashes.append(compute_manifest(data).dataset_hash)
                drive(dw, lambda h=hashes[-1]: dw.outbox.get(f"data__{h}") is not None)  # type: ignore[misc]
            # Several retry intervals; B waits behind A (delivery keeps queue order).
            drive(dw, lambda: getattr(dw.outbox.get(f"data__{hashes[0]}"), "attempts", 0) >= 4)
            row_b = dw.outbox.get(f"data__{hashes[1]}")
            assert row_b is not None and 0 == row_b.attempts
            assert hashes == [r.data_hash for r in dw.outbox.pending()]
        finally:
            airflow_server.start_api_server()
        run_ids = [f"data__{h}" for h in hashes]
        drive(
            dw,
            lambda: all(getattr(dw.outbox.get(i), "finished_at", None) for i in run_ids),
            timeout=300,
        )
        with airflow_server.client() as client:
            resp = client.get(f"/api/v2/dags/{STAND_IN_DAG_ID}/dagRuns", params={"limit": 100})
            resp.raise_for_status()
            ours = [r for r in resp.json()["dag_runs"] if r["dag_run_id"] in run_ids]
        assert sorted(run_ids) == sorted(r["dag_run_id"] for r in ours), "each exactly once"
        by_id = {r["dag_run_id"]: r for r in ours}
        first, second = (by_id[i] for i in run_ids)
        assert "success" == first["state"] == second["state"]
        assert first["run_after"] < second["run_after"], "submitted in order"
        assert first["end_date"] <= second["start_date"], "ran one after the other"
        for run_id, h in zip(run_ids, hashes, strict=True):
            conf = by_id[run_id]["conf"]
            assert h == conf["data_hash"] == compute_manifest(conf["data_dir"]).dataset_hash
        kinds = [e.kind for e in state.events()]
        assert 2 == kinds.count("trigger.delivered") == kinds.count("run.succeeded")
        assert "superseded" not in {r[0] for r in state.conn.execute("SELECT status FROM outbox")}
    finally:
        dw.stop()
        state.close()


def _pump(clock: FakeClock, alerting: Alerting, rounds: int) -> None:
    """Alerting ticks, each an hour apart: past any delivery backoff (capped at 1 h)."""
    for _ in range(rounds):
        clock.advance(3600)
        alerting.tick()


# -- Webhook receiver down: 500s, then connection refused, then back ----------------------


class _Receiver:
    """A local webhook receiver that answers 500 ``fail`` times, then 200; records bodies."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.fail = 0
        self.bodies: list[dict[str, Any]] = []
        self.signed_ok: list[bool] = []
        self.port = free_port()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.signed_ok.append(
                    verify_signature(
                        outer.secret,
                        self.headers["X-Watcher-Timestamp"],
                        body,
                        self.headers["X-Watcher-Signature"],
                    )
                )
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def delivered(self) -> list[tuple[str, str]]:
        """(alertname, status) per alert received, in order."""
        return [(a["labels"]["alertname"], a["status"]) for b in self.bodies for a in b["alerts"]]


def test_webhook_down_through_the_alerting_component(tmp_path: Path) -> None:
    """Three alerts (one fires and resolves, two one-off events) while the receiver answers
    500, then refuses connections, then comes back: each reaches it exactly once, in order,
    signed; the file channel is not held up meanwhile; health flags the failing channel."""
    secret = "s3cret-hmac"
    receiver = _Receiver(secret)
    cfg = make_config(
        tmp_path,
        **{
            "alerts.log": "false",
            "alerts.webhook.url": f"http://127.0.0.1:{receiver.port}/hook/tok",
            "alerts.webhook.secret": secret,
        },
    )
    state: StateStore = open_state(cfg.state.dir)
    clock = FakeClock()
    alerting = Alerting(cfg, state, clock)

    try:
        alerting.start()
        low = make_alert("ModelAccuracyLow", starts_at=clock.now(), model="m", version="2")
        alerting.evaluate("test", [low])
        receiver.fail = 10**6
        receiver.start()
        _pump(clock, alerting, 2)  # 500, 500
        alerting.event(make_alert("ModelRolledBack", starts_at=clock.now(), model="m"), 1)
        receiver.stop()
        _pump(clock, alerting, 2)  # connection refused
        assert not alerting.health().ok
        assert ["webhook"] == alerting.health().detail["notifier_failing"]
        alerting.evaluate("test", [])  # resolved, queued behind the firing one
        alerting.event(make_alert("DataDrift", starts_at=clock.now(), model="m"), 2)
        _pump(clock, alerting, 1)
        # The file channel never waited for the webhook.
        assert 4 == len(cfg.alerts_file.read_text().splitlines())
        assert [] == receiver.bodies
        receiver.fail = 2
        receiver.start()
        _pump(clock, alerting, 6)
        assert [
            ("ModelAccuracyLow", "firing"),
            ("ModelRolledBack", "firing"),
            ("ModelAccuracyLow", "resolved"),
            ("DataDrift", "firing"),
        ] == receiver.delivered()
        assert all(receiver.signed_ok)
        assert alerting.health().ok
        _pump(clock, alerting, 3)
        assert 4 == len(receiver.delivered()), "nothing is sent twice"
    finally:
        receiver.stop()
        alerting.stop()
        state.close()


# -- SMTP receiver down: temporary 451s, then connection refused, then back ---------------


class _Mailbox:
    """aiosmtpd handler: answers ``451`` (try again later) ``defer`` times, then accepts."""

    def __init__(self) -> None:
        self.defer = 0
        self.subjects: list[str] = []
        self.bodies: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.defer > 0:
            self.defer -= 1
            return "451 4.3.0 mailbox busy, try again later"
        msg = message_from_bytes(envelope.content)
        self.subjects.append(str(msg["Subject"]))
        body = msg.get_payload(decode=True)
        assert isinstance(body, bytes)
        self.bodies.append(body.decode())
        return "250 OK"


@pytest.mark.service
def test_smtp_down_through_the_alerting_component(tmp_path: Path) -> None:
    """A real SMTP server that first defers (451), then is gone, then returns: every alert
    mail arrives exactly once, in order; health names the failing channel meanwhile."""
    from aiosmtpd.controller import Controller

    port = free_port()
    mailbox = _Mailbox()
    cfg = make_config(
        tmp_path,
        **{
            "alerts.log": "false",
            "alerts.email.host": "127.0.0.1",
            "alerts.email.port": str(port),
            "alerts.email.security": "none",
            "alerts.email.to": "oncall@example.com",
            "alerts.email.timeout": "3",
        },
    )
    state = open_state(cfg.state.dir)
    clock = FakeClock()
    alerting = Alerting(cfg, state, clock)
    smtp: Controller | None = None

    def up() -> Controller:
        c = Controller(mailbox, hostname="127.0.0.1", port=port)
        c.start()
        return c

    try:
        alerting.start()
        mailbox.defer = 10**6
        smtp = up()
        low = make_alert("ModelAccuracyLow", starts_at=clock.now(), model="m", version="2")
        alerting.evaluate("test", [low])
        _pump(clock, alerting, 2)  # 451, 451
        assert [] == mailbox.subjects
        smtp.stop()
        smtp = None
        alerting.event(make_alert("ModelRolledBack", starts_at=clock.now(), model="m"), 1)
        alerting.evaluate("test", [])  # resolved, queued behind the firing one
        _pump(clock, alerting, 2)  # connection refused
        assert ["email"] == alerting.health().detail["notifier_failing"]
        mailbox.defer = 1
        smtp = up()
        _pump(clock, alerting, 6)
        # Retries batch what queued up meanwhile: one mail for both firing alerts, then the
        # resolution — each alert once, in the order raised.
        assert [
            "[FIRING] ModelAccuracyLow m v2 (+1 more)",
            "[RESOLVED] ModelAccuracyLow m v2",
        ] == mailbox.subjects
        assert "ModelRolledBack" in mailbox.bodies[0]
        assert "ModelRolledBack" not in mailbox.bodies[1]
        assert alerting.health().ok
        _pump(clock, alerting, 3)
        assert 2 == len(mailbox.subjects), "nothing is sent twice"
    finally:
        if smtp is not None:
            smtp.stop()
        alerting.stop()
        state.close()
