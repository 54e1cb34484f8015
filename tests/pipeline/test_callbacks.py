"""on_failure: a DagRunFailed alert through alerts/, channels from the WATCHER_ALERTS__* env.

Real receivers: a local HTTP server (webhook, Slack), a JSONL file and a real
Alertmanager. The Airflow context is a fake dict with the attributes Airflow 3
passes (ti, dag_run, run_id, exception); the DAG test runs the real thing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from alerts.notifiers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from pipeline.alert_channels import channels_from_env
from pipeline.callbacks import on_failure, send_failure_alert

SECRET = "s3cret-hmac"
TOKEN = "T0KEN-in-the-url"


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1; answers ``status`` and records what it got."""

    url: str = ""
    status: int = 200
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append((self.path, dict(self.headers.items()), body))
            self.send_response(state.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def context(exc: BaseException | None = None) -> dict[str, Any]:
    """What Airflow 3 hands an on_failure_callback, reduced to what we read."""
    ti = SimpleNamespace(
        dag_id="train_pipeline",
        task_id="preprocess",
        try_number=3,
        log_url="http://airflow.example/dags/train_pipeline/runs/data__abc/tasks/preprocess",
    )
    run = SimpleNamespace(dag_id="train_pipeline", run_id="data__abc")
    error = exc or ValueError("file 'iris.csv', column 'petal_length', row 7: NaN\nmore detail")
    return {"ti": ti, "dag_run": run, "run_id": "data__abc", "exception": error}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in list(os.environ):
        if name.startswith("WATCHER_ALERTS__"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_on_failure_alerts_webhook_slack_and_file(
    receiver: Receiver,
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One DagRunFailed per channel: signed v4 webhook, Slack blocks, a JSONL line; no secrets
    in the log."""
    jsonl = tmp_path / "alerts.jsonl"
    secret_file = tmp_path / "hmac"
    secret_file.write_text(SECRET + "\n")
    clean_env.setenv("WATCHER_ALERTS__FILE", str(jsonl))
    clean_env.setenv("WATCHER_ALERTS__WEBHOOK__URL", f"{receiver.url}/hook/{TOKEN}")
    clean_env.setenv("WATCHER_ALERTS__WEBHOOK__SECRET_FILE", str(secret_file))
    clean_env.setenv("WATCHER_ALERTS__SLACK__WEBHOOK_URL", f"{receiver.url}/slack/{TOKEN}")
    caplog.set_level(logging.INFO, logger="pipeline.callbacks")

    on_failure(context())

    labels = {
        "alertname": "DagRunFailed",
        "dag_id": "train_pipeline",
        "task_id": "preprocess",
        "run_id": "data__abc",
        "severity": "warning",
    }
    (line,) = jsonl.read_text().splitlines()
    row = json.loads(line)
    assert labels == row["labels"]
    assert "firing" == row["status"]
    assert {
        "summary": "train_pipeline: task preprocess failed (try 3)",
        "description": "ValueError: file 'iris.csv', column 'petal_length', row 7: NaN",
        "try_number": "3",
    } == row["annotations"]
    assert row["generatorURL"].startswith("http://airflow.example/")

    by_path = {path.split("/")[1]: (headers, body) for path, headers, body in receiver.requests}
    assert {"hook", "slack"} == set(by_path) and 2 == len(receiver.requests)
    headers, body = by_path["hook"]
    assert verify_signature(
        SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER], max_age_s=60
    )
    payload = json.loads(body)
    assert ("4", "firing") == (payload["version"], payload["status"])
    assert labels == payload["alerts"][0]["labels"]
    slack = json.loads(by_path["slack"][1])
    assert "[FIRING] DagRunFailed" in slack["text"]
    assert "petal_length" in json.dumps(slack["blocks"])

    assert "train_pipeline task failed" in caplog.text  # the log line the DAG test looks for
    assert "DagRunFailed alert sent to webhook" in caplog.text
    assert TOKEN not in caplog.text and SECRET not in caplog.text


@pytest.mark.service
def test_on_failure_reaches_a_real_alertmanager(
    alertmanager: str, clean_env: pytest.MonkeyPatch
) -> None:
    """WATCHER_ALERTS__ALERTMANAGER__URL: the alert shows in GET /api/v2/alerts."""
    clean_env.setenv("WATCHER_ALERTS__ALERTMANAGER__URL", alertmanager)
    run_id = f"data__{time.time_ns()}"
    ctx = context()
    ctx["run_id"] = run_id
    assert {"alertmanager": None} == send_failure_alert(ctx)
    deadline = time.monotonic() + 10
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        found = httpx.get(
            f"{alertmanager}/api/v2/alerts",
            params={"filter": ['alertname="DagRunFailed"', f'run_id="{run_id}"']},
            timeout=5,
        ).json()
        time.sleep(0.1)
    assert 1 == len(found)
    assert "preprocess" == found[0]["labels"]["task_id"]
    assert "3" == found[0]["annotations"]["try_number"]


def test_a_failing_channel_never_raises_or_blocks_the_others(
    receiver: Receiver,
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Receiver 500, unusable variables, a garbage context: logged, file still written, no raise."""
    jsonl = tmp_path / "alerts.jsonl"
    receiver.status = 500
    clean_env.setenv("WATCHER_ALERTS__FILE", str(jsonl))
    clean_env.setenv("WATCHER_ALERTS__WEBHOOK__URL", f"{receiver.url}/hook/{TOKEN}")
    clean_env.setenv("WATCHER_ALERTS__SLACK__WEBHOOK_URL", f"ftp://nope/{TOKEN}")
    clean_env.setenv("WATCHER_ALERTS__ALERTMANAGER__URL_FILE", str(tmp_path / "missing"))

    results = send_failure_alert(context(RuntimeError("boom")))
    assert {"file": None, "webhook": "HTTP 500: ok"} == results
    assert 1 == len(jsonl.read_text().splitlines())
    assert "WATCHER_ALERTS__SLACK__WEBHOOK_URL: not an http(s) URL" in caplog.text
    assert "WATCHER_ALERTS__ALERTMANAGER__URL_FILE: cannot read" in caplog.text
    assert TOKEN not in caplog.text

    on_failure(None)  # type: ignore[arg-type]  # Airflow never does this; we still must not raise
    assert "on_failure callback itself failed" in caplog.text


def test_no_channels_configured_is_a_warning(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing set: nothing sent, a warning names the variables to set."""
    assert ([], []) == channels_from_env({})
    assert {} == send_failure_alert(context(), env={}, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert "WATCHER_ALERTS__FILE" in caplog.text
