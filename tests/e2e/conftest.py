"""The whole loop for real: `watcher run` (a subprocess, configured from a TOML file)
against the project's own ``dags/train_pipeline.py`` in a real Airflow 3, a real
``mlflow server`` and a real Alertmanager — the session servers of tests/services.

Every wait is on an event (an Airflow run state over REST, a row in the watcher's
history, a log line, an Alertmanager alert), with deadlines generous enough for a
loaded 2-core box; each story uses its own model name and data, so the stories share
the servers without seeing each other.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from pipeline import sample_data
from pipeline.lineage import compute_manifest
from tests.reliability.conftest import start_daemon, stop_daemon, wait_for
from tests.runtime.conftest import free_port
from tests.services.airflow_server import DAG_ID, E2E_EXPERIMENT, AirflowServer

if TYPE_CHECKING:
    from mlflow import MlflowClient

# A real DAG run is ~40 s on an idle 2-core box (four task processes importing mlflow
# and sklearn); these deadlines allow for other sessions sharing the cores.
RUN_DEADLINE_S = 420.0
EVENT_DEADLINE_S = 120.0
READY_DEADLINE_S = 120.0
WATCHER = [sys.executable, "-m", "watcher.cli"]


@pytest.fixture(scope="session")
def real_dag(airflow_server: AirflowServer) -> AirflowServer:
    """The real ``train_pipeline``, unpaused the way the README tells users to (the REST
    call of its curl line; ``airflow dags unpause`` costs an Airflow import, ~20 s loaded)."""
    with airflow_server.client() as client:
        assert client.get(f"/api/v2/dags/{DAG_ID}").json()["is_paused"] is True, "starts paused"
        resp = client.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False})
        assert 200 == resp.status_code, resp.text
        assert client.get(f"/api/v2/dags/{DAG_ID}").json()["is_paused"] is False
    return airflow_server


# -- data -------------------------------------------------------------------------------


def write_iris(path: Path, variant: float, *, broken_row: int | None = None) -> str:
    """Iris with sepal_length shifted by ``variant`` (distinct bytes per story and step),
    written atomically; ``broken_row`` puts a non-numeric cell there. Returns the hash."""
    header, rows = sample_data.shift(sample_data.iris_table(), "sepal_length", variant)
    if broken_row is not None:
        rows[broken_row][header.index("sepal_width")] = "abc"
    tmp = path.with_name(f".{path.name}.tmp")  # dot-files are ignored by the watcher
    sample_data.write_csv(tmp, (header, rows))
    tmp.replace(path)
    return compute_manifest(path.parent).dataset_hash


# -- the daemon -------------------------------------------------------------------------


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_toml(path: Path, sections: dict[str, dict[str, object]]) -> None:
    lines: list[str] = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in keys.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


@dataclass
class Daemon:
    """`watcher run` in ``root`` with ``root/watcher.toml``; its log in ``root/watcher.log``."""

    root: Path
    password: str
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0  # wall clock of the last ready

    @property
    def config(self) -> Path:
        return self.root / "watcher.toml"

    @property
    def log(self) -> Path:
        return self.root / "watcher.log"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHER_", "MLFLOW_"))}
        env |= {
            "WATCHER_CONFIG": str(self.config),
            # A secret may not be written in the file: env (or a *_file), as documented.
            "WATCHER_TRIGGER__AIRFLOW__PASSWORD": self.password,
            "MLFLOW_CONFIGURE_LOGGING": "false",
            "PYTHONUNBUFFERED": "1",  # keep the log of a SIGKILLed daemon
        }
        return env

    def count(self, event: str, *, containing: str = "") -> int:
        if not self.log.exists():
            return 0
        return sum(
            f'"event": "{event}"' in line and containing in line
            for line in self.log.read_text(errors="replace").splitlines()
        )

    def start(self) -> None:
        seen = self.count("ready")
        self.proc = start_daemon(self.root, self.env)
        wait_for(lambda: self.count("ready") > seen or not self.running, READY_DEADLINE_S, "ready")
        assert self.running, self.tail()
        self.started_at = time.time()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int:
        """SIGTERM; the exit status (0 is a clean stop)."""
        assert self.proc is not None
        return stop_daemon(self.proc, timeout=60)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def delivered(self, channel: str, **labels: str) -> list[dict[str, Any]]:
        """Firing alerts with ``labels`` that ``channel`` accepted, oldest first: the outbox
        marks a delivery delivered only after the channel's 2xx (alerts/dispatcher.py)."""
        rows = self._query(
            "SELECT notification_json FROM alert_deliveries WHERE channel = ? AND kind ="
            " 'firing' AND delivered_at IS NOT NULL ORDER BY id",
            channel,
        )
        alerts = [json.loads(r["notification_json"])["alert"] for r in rows]
        return [a for a in alerts if labels.items() <= a["labels"].items()]

    def diagnose(self, alertname: str = "", lines: int = 60) -> str:
        """What to read when a wait times out: which hop stalled (MLflow read, policy,
        alert outbox, Alertmanager POST). The log's last ``lines`` JSON lines, `watcher
        status --json`, and the alert states and outbox rows of ``alertname``."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        log = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        parts = [f"--- diagnosis at {now}, daemon running: {self.running}"]
        parts += [f"--- last {lines} log lines of {self.log}", *log[-lines:]]
        try:
            done = self.cli("status", "--json")
            parts += ["--- watcher status --json", (done.stdout + done.stderr)[-4000:]]
        except subprocess.TimeoutExpired:
            parts.append("--- watcher status --json: timed out")
        like = f"%{alertname}%"
        states = self._query(
            "SELECT fingerprint, source, status, sequence, last_notified_at, updated_at,"
            " alert_json FROM alert_states WHERE alert_json LIKE ?",
            like,
        )
        outbox = self._query(
            "SELECT id, channel, kind, sequence, created_at, attempts, next_attempt_at,"
            " delivered_at, last_error FROM alert_deliveries WHERE notification_json LIKE ?"
            " ORDER BY id",
            like,
        )
        parts += [f"--- alert_states of {alertname or 'every alert'}", *map(str, states)]
        parts += [f"--- alert_deliveries of {alertname or 'every alert'}", *map(str, outbox)]
        return "\n".join(parts)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*WATCHER, *args], env=self.env, capture_output=True, text=True, timeout=120,
            check=False,
        )  # fmt: skip

    def _query(self, sql: str, *args: object) -> list[dict[str, Any]]:
        """Rows from the watcher's state DB, read-only (the daemon may be running)."""
        db = self.root / "state" / "state.db"
        if not db.exists():
            return []
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        conn.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in conn.execute(sql, args)]
        finally:
            conn.close()

    def events(self, kind: str, **where: str) -> list[dict[str, Any]]:
        """History rows of one kind, oldest first, matching ``where`` (model, version...)."""
        return [
            {**r, "payload": json.loads(r["payload"])}
            for r in self._query("SELECT * FROM events WHERE kind = ? ORDER BY id", kind)
            if all(r.get(k) == v for k, v in where.items())
        ]

    def registry_view(self, model: str) -> tuple[str | None, dict[str, str]] | None:
        """What the watcher last observed of ``model``: (Production version, version → stage)."""
        rows = self._query(
            "SELECT production_version, versions FROM registry_models WHERE model = ?", model
        )
        return (rows[0]["production_version"], json.loads(rows[0]["versions"])) if rows else None

    def outbox_runs(self) -> set[str]:
        """Run ids the watcher ever queued."""
        return {r["run_id"] for r in self._query("SELECT run_id FROM outbox")}

    def wait_event(self, kind: str, what: str = "", **where: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = self.events(kind, **where)
            return bool(found) or not self.running

        what = what or f"history {kind} {where}"
        wait_for(seen, EVENT_DEADLINE_S, what, poll=0.3, diagnose=self.diagnose)
        assert found, f"the daemon exited before {kind}:\n{self.diagnose()}"
        return found[-1]

    def metrics(self) -> bytes:
        resp = httpx.get(f"http://127.0.0.1:{self.http_port}/metrics", timeout=30)
        resp.raise_for_status()
        return resp.content

    def close(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=30)


def base_config(
    root: Path, model: str, mode: str, airflow: AirflowServer, mlflow: str, am: str, port: int
) -> dict[str, dict[str, object]]:
    """A watcher config as a user writes it from the README (short intervals for a test)."""
    return {
        "watch": {"data_dir": root / "data", "quiet_period": "0.5s", "max_wait": "5s"},
        "state": {"dir": root / "state"},
        "mlflow": {"tracking_uri": mlflow, "registry_mode": mode, "request_timeout": "60s"},
        "trigger": {"backend": "airflow", "retry_initial": "1s", "retry_max": "5s"},
        "trigger.airflow": {"url": airflow.base_url, "username": airflow.username},
        "monitor": {
            "models": [model],
            "poll_interval": "1s",
            "min_accuracy": 0.8,
            "window": 1,
            "min_samples": 100,
        },
        "rollback": {"auto": True},
        "alerts": {"log": False},  # notifications also land in state/alerts.jsonl
        "alerts.alertmanager": {"url": am, "resend_interval": "5s"},
        "http": {"listen": f"127.0.0.1:{port}"},
        "log": {"format": "json", "level": "info"},
    }


# -- Airflow, MLflow, Alertmanager ------------------------------------------------------


def dag_runs(server: AirflowServer, model: str) -> dict[str, dict[str, Any]]:
    """dag_run_id → run of every ``train_pipeline`` run whose conf names ``model``."""
    with server.client() as client:
        resp = client.get(f"/api/v2/dags/{DAG_ID}/dagRuns", params={"limit": 100})
        resp.raise_for_status()
        runs: list[dict[str, Any]] = resp.json()["dag_runs"]
    return {r["dag_run_id"]: r for r in runs if (r.get("conf") or {}).get("model_name") == model}


def wait_run(server: AirflowServer, run_id: str, daemon: Daemon) -> dict[str, Any]:
    """Wait until Airflow run ``run_id`` is finished; its REST representation."""
    found: dict[str, Any] = {}

    def finished() -> bool:
        with server.client() as client:
            resp = client.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}")
        if resp.status_code == 200:
            found.update(resp.json())
        return found.get("state") in ("success", "failed")

    wait_for(
        finished,
        RUN_DEADLINE_S,
        f"Airflow run {run_id}",
        poll=1.0,
        diagnose=lambda: f"last seen {found}\n{daemon.diagnose()}",
    )
    return found


def task_instances(server: AirflowServer, run_id: str) -> dict[str, dict[str, Any]]:
    with server.client() as client:
        resp = client.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")
        resp.raise_for_status()
        tis: list[dict[str, Any]] = resp.json()["task_instances"]
    return {ti["task_id"]: ti for ti in tis}


def mlflow_client(url: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def training_run(client: MlflowClient, run_id: str) -> Any:
    """The MLflow run the DAG run ``run_id`` logged (tag dag_run_id)."""
    exp = client.get_experiment_by_name(E2E_EXPERIMENT)
    assert exp is not None, f"no experiment {E2E_EXPERIMENT!r}: the workers' env did not apply"
    runs = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.dag_run_id = '{run_id}'", max_results=5
    )
    assert 1 == len(runs), f"{len(runs)} MLflow runs for {run_id}"
    return runs[0]


def am_alerts(url: str, **labels: str) -> list[dict[str, Any]]:
    """Active alerts in Alertmanager with all ``labels``."""
    params = httpx.QueryParams([("filter", f'{k}="{v}"') for k, v in labels.items()])
    resp = httpx.get(f"{url}/api/v2/alerts", params=params, timeout=30)
    resp.raise_for_status()
    alerts: list[dict[str, Any]] = resp.json()
    return alerts


def wait_am_alert(
    url: str, daemon: Daemon, what: str, *, sent_by_daemon: bool = False, **labels: str
) -> dict[str, Any]:
    """Wait until Alertmanager shows an active alert with ``labels``; on timeout the
    failure shows the daemon's side (:meth:`Daemon.diagnose`) and what Alertmanager
    holds of that alert name.

    ``sent_by_daemon``: the daemon's own alert, which it may resolve a moment later (an
    automatic rollback ends the breach at the next poll): it is active in Alertmanager
    for one delivery round (~1 s), possibly over before the command that caused it has
    exited on a loaded box, and Alertmanager's API never lists a resolved alert.
    Alertmanager's 2xx to the firing (the outbox row marked delivered) proves it too."""
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = am_alerts(url, **labels)
        if not found and sent_by_daemon:
            found[:] = daemon.delivered("alertmanager", **labels)
        return bool(found)

    def diagnose() -> str:
        name = labels.get("alertname", "")
        held = am_alerts(url, alertname=name) if name else []
        return f"{daemon.diagnose(name)}\n--- Alertmanager's active {name or 'alerts'}: {held}"

    wait_for(seen, EVENT_DEADLINE_S, f"{what} in Alertmanager", poll=0.5, diagnose=diagnose)
    return found[0]


def notified(daemon: Daemon, alertname: str, model: str) -> list[dict[str, Any]]:
    """Notifications of ``alertname`` for ``model`` in the file channel."""
    path = daemon.root / "state" / "alerts.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        r
        for r in rows
        if r["labels"].get("alertname") == alertname and r["labels"].get("model") == model
    ]


def gauge(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the exposition ``text``; None when absent."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None
