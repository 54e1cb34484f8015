"""Security of a whole run: secrets in no output, private files, no shell anywhere.

Referenced, not repeated: the HTTP endpoint binds 127.0.0.1 by default and refuses a
public address unless `http.allow_public = true` (tests/test_config.py
test_public_bind_refused, tests/runtime/test_http_endpoint.py test_public_bind_needs_opt_in);
webhook signatures verify and expire (tests/alerts/test_webhook.py; also checked end to
end by tests/reliability/test_faults.py::test_webhook_down_through_the_alerting_component).
"""

from __future__ import annotations

import stat
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.data.conftest import DataSide, drive, make_config, runs
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
from watcher.runtime.state import open_state

AIRFLOW_PASSWORD = "af-PW-8c1e2b7f"
WEBHOOK_TOKEN = "wh-TOKEN-51d0aa93"
WEBHOOK_SECRET = "wh-HMAC-77e2c4d1"
SMTP_PASSWORD = "smtp-PW-3f9a6e20"
REGISTRY_HOOK_SECRET = "mlflow-HOOK-2b6d90e4"  # monitor.webhooks.secret (#18)
SECRETS = (AIRFLOW_PASSWORD, WEBHOOK_TOKEN, WEBHOOK_SECRET, SMTP_PASSWORD, REGISTRY_HOOK_SECRET)


@dataclass
class Scenario:
    root: Path
    outputs: dict[str, str]  # name -> text of every output the scenario produced


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return str(resp.read().decode())
    except urllib.error.HTTPError as exc:  # /healthz answers 503 while backends are down
        return str(exc.read().decode())


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """`watcher run` with every secret set and every backend failing (Airflow, webhook and
    SMTP refuse connections, MLflow is down so an alert fires), then status, history,
    check-config and service-unit; collects all their outputs and the state dir."""
    root = tmp_path_factory.mktemp("secrets")
    (root / "data").mkdir()
    (root / "data" / "iris.csv").write_text("a,target\n1,0\n")
    creds = root / "creds"
    creds.mkdir()
    (creds / "smtp").write_text(SMTP_PASSWORD + "\n")
    port = free_port()
    env = daemon_env(
        root,
        WATCHER_TRIGGER__BACKEND="airflow",
        WATCHER_TRIGGER__AIRFLOW__URL=f"http://127.0.0.1:{closed_port()}",
        WATCHER_TRIGGER__AIRFLOW__PASSWORD=AIRFLOW_PASSWORD,
        WATCHER_ALERTS__WEBHOOK__URL=f"http://127.0.0.1:{closed_port()}/hooks/{WEBHOOK_TOKEN}",
        WATCHER_ALERTS__WEBHOOK__SECRET=WEBHOOK_SECRET,
        WATCHER_ALERTS__EMAIL__HOST="127.0.0.1",
        WATCHER_ALERTS__EMAIL__PORT=str(closed_port()),
        WATCHER_ALERTS__EMAIL__USERNAME="ops",
        WATCHER_ALERTS__EMAIL__PASSWORD_FILE=str(creds / "smtp"),
        WATCHER_ALERTS__EMAIL__TO="ops@example.org",
        WATCHER_ALERTS__LOG="true",
        WATCHER_HTTP__LISTEN=f"127.0.0.1:{port}",
        WATCHER_MONITOR__WEBHOOKS__SECRET=REGISTRY_HOOK_SECRET,
    )
    outputs: dict[str, str] = {}
    proc = start_daemon(root, env)
    try:

        def failed_everywhere() -> bool:
            if not (root / "state" / "state.db").exists():
                return False
            conn = db(root)
            try:
                channels = {
                    c for (c,) in conn.execute(
                        "SELECT channel FROM alert_deliveries WHERE last_error IS NOT NULL"
                    )
                }  # fmt: skip
                trig = conn.execute(
                    "SELECT count(*) FROM outbox WHERE last_error IS NOT NULL"
                ).fetchone()[0]
            except Exception:
                return False
            finally:
                conn.close()
            return {"webhook", "email"} <= channels and trig > 0

        wait_for(failed_everywhere, 90, "failed deliveries on every backend", poll=0.5)
        outputs["/metrics"] = _get(f"http://127.0.0.1:{port}/metrics")
        outputs["/healthz"] = _get(f"http://127.0.0.1:{port}/healthz")
    finally:
        assert 0 == stop_daemon(proc)
    for name, argv in {
        "status": ["status", "--json"],
        "history": ["history", "--json"],
        "check-config": ["check-config"],
        "service-unit": ["service-unit"],
    }.items():
        done = subprocess.run(
            [*WATCHER, *argv],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 0 == done.returncode, (name, done.stderr)
        outputs[name] = done.stdout + done.stderr
    outputs["daemon log"] = (root / "watcher.log").read_text()
    conn = db(root)
    try:
        outputs["state.db dump"] = "\n".join(conn.iterdump())
    finally:
        conn.close()
    outputs["alerts.jsonl"] = (root / "state" / "alerts.jsonl").read_text()
    return Scenario(root, outputs)


def test_no_secret_in_any_output(scenario: Scenario) -> None:
    """None of the four secret values (Airflow password, webhook URL token, webhook HMAC
    secret, SMTP password) appears in the log, /metrics, /healthz, status, history,
    check-config, the unit file, the alerts JSONL or any row of the state DB — while the
    scenario really exercised them (failed deliveries, an alert, a trigger error)."""
    out = scenario.outputs
    assert "MlflowUnreachable" in out["alerts.jsonl"]
    assert "trigger.retrying" in out["history"] or "trigger.failed" in out["history"]
    assert "watcher_" in out["/metrics"]
    assert "[Service]" in out["service-unit"]
    leaks = [(name, s) for name, text in out.items() for s in SECRETS if s in text]
    assert [] == leaks


def test_state_files_are_private(scenario: Scenario) -> None:
    """Everything the daemon created in the state dir is owner-only: the dir 0700, the DB,
    its WAL/SHM, the lock and the alerts JSONL 0600 (no group/other bits at all)."""
    state = scenario.root / "state"
    assert 0o700 == stat.S_IMODE(state.stat().st_mode)
    files = [p for p in state.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"state.db", "alerts.jsonl"} <= names
    loose = {str(p.relative_to(state)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert {} == {k: v for k, v in loose.items() if int(v, 8) & 0o077}


def test_data_derived_strings_never_reach_a_shell(tmp_path: Path) -> None:
    """Data files named `$(touch pwned)`, `;touch pwned2;` and `` `touch pwned3` `` in a
    data dir whose own name is `$(touch pwned4)`: the `command` backend runs once with
    those names as plain data, and no file named pwned* appears anywhere."""
    data = tmp_path / "$(touch pwned4)"
    cfg = make_config(tmp_path, **{"watch.data_dir": str(data)})
    data.mkdir()
    for name in ("$(touch pwned)", ";touch pwned2;", "`touch pwned3`"):
        (data / name).write_text("a,target\n1,0\n")
    state = open_state(cfg.state.dir)
    dw = DataSide(cfg, state, progress=False, follow_interval=0.2)
    try:
        dw.start()
        drive(dw, lambda: len(runs(tmp_path)) == 1)
        drive(dw, lambda: not dw.outbox.following())
        row = dw.outbox.get(f"data__{runs(tmp_path)[0]}")
    finally:
        dw.stop()
        state.close()
    assert row is not None and "success" == row.run_state
    assert str(data) == row.conf["data_dir"]
    time.sleep(0.2)
    assert [] == list(tmp_path.rglob("pwned*"))
    assert [] == [n for n in ("pwned", "pwned2", "pwned3", "pwned4") if (Path.cwd() / n).exists()]
