"""Issue 15, round 2 of hardening: what a hostile week of operations broke.

One test (or a few) per item, each failing on the code before its fix. Bad-input cases
(validation gaps, item 14) live in the corpus, tests/reliability/test_bad_input.py.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import math
import re
import sqlite3
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from alerts.dispatcher import Backoff
from alerts.notifiers.webhook import sign, verify_signature
from tests.data.conftest import DataSide, OutageTrigger, drive, make_config, runs
from tests.reliability.conftest import (
    WATCHER,
    daemon_env,
    db,
    start_daemon,
    stop_daemon,
    wait_for,
)
from tests.reliability.test_security import _get
from tests.services.mlflow_server import free_port
from watcher.app import build_trigger
from watcher.errors import StateError
from watcher.runtime.health import CoreChecks
from watcher.runtime.http import health_body
from watcher.runtime.logging import redact_text, register_secrets
from watcher.runtime.state import DB_NAME, iso, open_state
from watcher.trigger.outbox import Outbox, backoff

# -- 1. A long trigger outage ---------------------------------------------------------------


def test_backoff_is_finite_for_any_attempt_count() -> None:
    """The outbox and the alert dispatcher share one backoff: capped at any attempt count
    (the outbox's uncapped 2.0 ** (n - 1) overflowed at n = 1,025), even with a 100-year
    base where the dispatcher's timedelta product overflowed."""
    assert 600.0 == backoff(10_000, 0.001, 600, 1.0)
    assert 300.0 == backoff(10**9, 5, 600, 0.0)
    century = timedelta(days=36_500)
    assert century == Backoff(century, century).delay(10**6, 1.0)


def test_outage_of_10000_attempts_keeps_retrying_and_fails_healthz(tmp_path: Path) -> None:
    """A trigger whose delivery already failed 9,999 times (set in the DB, as after weeks of
    Airflow outage): the next pass retries it (attempt 10,000, delay capped at retry_max),
    /healthz reports the data check failing with the error, and when the backend is back
    the run is delivered once."""
    cfg = make_config(tmp_path)
    data = cfg.watch.data_dir
    data.mkdir()
    (data / "a.csv").write_text("x,y\n1,1\n")
    state = open_state(cfg.state.dir)
    trigger = OutageTrigger(build_trigger(cfg))
    trigger.down = True
    dw = DataSide(cfg, state, trigger=trigger, progress=False)
    try:
        dw.start()
        drive(dw, lambda: trigger.refused >= 1)
        assert health_body([dw.health()])[0], "one failed attempt is not yet an outage"
        now = datetime.now(UTC)
        state.conn.execute(
            "UPDATE outbox SET attempts = 9999, next_attempt_at = ? WHERE status = 'pending'",
            (iso(now),),
        )
        drive(dw, lambda: dw.outbox.pending()[0].attempts == 10_000)
        row = dw.outbox.pending()[0]
        retry_in = datetime.fromisoformat(row.next_attempt_at) - now
        assert timedelta(0) < retry_in <= timedelta(seconds=cfg.trigger.retry_max + 30)
        ok, doc = health_body([dw.health()])
        assert not ok
        assert doc["failing"]["data"]["delivery_attempts"] == 10_000
        assert "injected outage" in str(doc["failing"]["data"]["delivery_error"])
        trigger.down = False
        drive(dw, lambda: len(runs(tmp_path)) == 1, timeout=30)
        assert health_body([dw.health()])[0]
    finally:
        dw.stop()
        state.close()


# -- 8. Webhook signature verification ------------------------------------------------------

_HOOK_SECRET = "hook-secret-0123"


def test_verify_signature_refuses_replays_by_default() -> None:
    """The README's call, no max_age_s: a request signed 30 days ago is refused, one from
    a minute ago accepted (the default window is 5 minutes)."""
    now = time.time()
    for age, accepted in ((60, True), (30 * 86400, False), (-30 * 86400, False)):
        ts = str(int(now - age))
        header = sign(_HOOK_SECRET, ts, b"{}")
        assert accepted == verify_signature(_HOOK_SECRET, ts, b"{}", header), age


@pytest.mark.parametrize(
    ("timestamp", "header"),
    [
        ("nan", None),
        ("inf", None),
        ("-inf", None),
        ("1e400", None),
        ("", None),
        ("١٧٦٧٢٦٨٨٠٠", None),  # Arabic-Indic digits: float() reads them
        (None, "sha256=é"),  # non-ASCII header: compare_digest raised TypeError
        (None, "sha256=\udcff"),
        (None, ""),
    ],
)
def test_verify_signature_is_false_on_garbage(timestamp: str | None, header: str | None) -> None:
    """Non-finite, empty or non-ASCII timestamps and non-ASCII headers: False, no raise."""
    ts = timestamp if timestamp is not None else "1000"
    good = sign(_HOOK_SECRET, ts.encode("utf-8", "replace").decode(), b"{}")
    assert not verify_signature(
        _HOOK_SECRET, ts, b"{}", good if header is None else header, now=1000.0
    )
    assert not verify_signature(
        _HOOK_SECRET, ts, b"{}", good if header is None else header, max_age_s=math.inf
    )


# -- 11-13. The state DB: read-only, truncated to 0 bytes, unwritable while running ----------


@contextlib.contextmanager
def _immutable(*paths: Path) -> Iterator[None]:
    """``chattr +i``: SQLite opens the file but every write fails (also through a
    descriptor already open) — what a read-only state.db does to a non-root daemon
    (root, as here, ignores chmod)."""
    done: list[Path] = []
    try:
        for path in paths:
            run = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
            if run.returncode != 0:
                pytest.skip(f"chattr +i not possible here: {run.stderr.decode().strip()}")
            done.append(path)
        yield
    finally:
        for path in done:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=True)


def _populated_state(root: Path) -> Path:
    """A state dir whose DB holds history, closed (WAL checkpointed away)."""
    state = open_state(root / "state")
    state.record("test.event", "history worth keeping")
    state.close()
    return root / "state" / DB_NAME


def _watcher(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WATCHER, *argv],
        cwd=root,
        env=daemon_env(root),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_statement_errors_inside_a_transaction_name_the_file(tmp_path: Path) -> None:
    """An error from a statement in a transaction's body is a StateError naming the DB
    (it escaped as a bare sqlite3.OperationalError), and the transaction is rolled back."""
    state = open_state(tmp_path / "state")
    try:
        named = re.escape(f"{tmp_path / 'state' / DB_NAME}: ")
        with pytest.raises(StateError, match=named), state.transaction() as tx:
            tx.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
            tx.execute("INSERT INTO no_such_table VALUES (1)")
        assert state.get_meta("k") is None
        state.set_meta("k", "after")  # the connection is usable again
    finally:
        state.close()


def test_read_only_state_db_fails_before_ready_naming_the_file(root: Path) -> None:
    """A state.db that takes no writes: `watcher run` exits 1 before READY with one error
    line naming the file (it logged `ready`, then a traceback on every pass)."""
    db_path = _populated_state(root)
    with _immutable(db_path):
        done = _watcher(root, "run")
    assert 1 == done.returncode, done.stderr
    errors = _error_lines(done.stderr)
    assert 1 == len(errors) and str(db_path) in errors[0] and "readonly" in errors[0], errors
    assert "Traceback" not in done.stderr
    assert '"ready"' not in done.stderr
    assert not (root / "runs.txt").exists()


@pytest.mark.parametrize("argv", [("run",), ("history",), ("status", "--json")])
def test_empty_state_db_is_refused_not_reinitialised(root: Path, argv: tuple[str, ...]) -> None:
    """state.db truncated to 0 bytes is refused like a corrupt one (exit 1, the file
    named); it was silently re-initialised, losing the history. The file stays as it is."""
    db_path = _populated_state(root)
    db_path.write_bytes(b"")
    done = _watcher(root, *argv)
    assert 1 == done.returncode, done.stderr
    errors = _error_lines(done.stderr)
    assert 1 == len(errors) and str(db_path) in errors[0] and "0 bytes" in errors[0], errors
    assert "Traceback" not in done.stderr
    assert 0 == db_path.stat().st_size


def test_a_new_state_db_is_never_left_empty(tmp_path: Path) -> None:
    """A fresh DB is created with its header under a temporary name and linked into place
    (so an empty state.db can only be damage): no temporary file is left behind."""
    state = open_state(tmp_path / "state")
    state.close()
    names = sorted(p.name for p in (tmp_path / "state").iterdir())
    assert [DB_NAME] == [n for n in names if not n.startswith(f"{DB_NAME}-")]
    assert (tmp_path / "state" / DB_NAME).stat().st_size > 0


def test_healthz_fails_when_the_state_db_stops_taking_writes(tmp_path: Path) -> None:
    """The core check proves a write (it only read the outbox depth): once the DB is
    read-only /healthz is 503 naming the file, and 200 again when it takes writes."""
    cfg = make_config(tmp_path)
    cfg.watch.data_dir.mkdir()
    state = open_state(cfg.state.dir)
    core = CoreChecks(cfg.watch.data_dir, state, queued=Outbox(state).depth)
    try:
        core.start()
        assert health_body([core.health()])[0]
        wal = state.path.with_name(DB_NAME + "-wal")
        assert wal.exists()  # WAL mode: a write lands here first
        with _immutable(state.path, wal):
            core.tick()
            ok, doc = health_body([core.health()])
        assert not ok
        (problem,) = doc["failing"]["core"]["problems"]
        assert str(state.path) in problem
        core.tick()
        assert health_body([core.health()])[0]
    finally:
        state.close()


# -- 7. Live-accuracy observations: bounded at the CLI, skipped by the daemon -----------------


def _log_observation(
    client: Any, run_id: str, step: int, accuracy: float, samples: float, at_ms: int
) -> None:
    """Append one observation straight to MLflow (around the CLI's checks)."""
    from mlflow.entities import Metric, RunTag

    from watcher.backends.mlflow_observations import METRIC_ACCURACY, METRIC_SAMPLES, TAG_COUNT

    client.log_batch(
        run_id,
        metrics=[
            Metric(METRIC_ACCURACY, accuracy, at_ms, step),
            Metric(METRIC_SAMPLES, samples, at_ms, step),
        ],
        tags=[RunTag(TAG_COUNT, str(step + 1))],
    )


def test_daemon_skips_unusable_observations_and_reports_each_once(
    mlflow_sqlite_uri: str, tmp_path: Path
) -> None:
    """Observations already in MLflow with absurd values (10**19 samples, which crashed
    every poll with "Python int too large to convert to SQLite INTEGER"; accuracy 5; a
    2099 timestamp, which stayed the newest in the window for ever): the poll leaves them
    out, logs each once, and the policy and `watcher status` use the good ones."""
    from mlflow import MlflowClient

    from watcher.backends.mlflow_observations import FeedbackReader, report_accuracy
    from watcher.backends.mlflow_registry import MlflowRegistry
    from watcher.config import MonitorConfig
    from watcher.monitor.poll import Monitor

    client = MlflowClient(tracking_uri=mlflow_sqlite_uri, registry_uri=mlflow_sqlite_uri)
    client.create_registered_model("m")
    client.create_model_version("m", source="s3://unused-bucket/m/1")
    client.set_registered_model_alias("m", "production", "1")
    registry = MlflowRegistry(mlflow_sqlite_uri, "alias")
    now = datetime.now(UTC)
    good = report_accuracy("m", 0.95, 500, at=now - timedelta(minutes=2), registry=registry)
    now_ms = int(now.timestamp() * 1000)
    _log_observation(client, good.run_id, 1, 0.10, 1e19, now_ms)
    _log_observation(client, good.run_id, 2, 5.0, 100.0, now_ms)
    in_2099 = int(datetime(2099, 1, 1, tzinfo=UTC).timestamp() * 1000)
    _log_observation(client, good.run_id, 3, 0.10, 1000.0, in_2099)

    state = open_state(tmp_path / "state")
    cfg = MonitorConfig.model_validate({"models": ["m"], "window": 5, "min_samples": 100})
    mon = Monitor(cfg, state, registry, FeedbackReader(registry), None, use_scheduler=False)
    try:
        with structlog.testing.capture_logs() as logs:
            mon.start()
            for _ in range(2):
                result = mon.poll_once()
                assert result is not None and result.error is None, result
                mon.tick()
            # A new good observation re-reads the run's history: still reported once each.
            report_accuracy("m", 0.93, 500, at=now - timedelta(minutes=1), registry=registry)
            result = mon.poll_once()
            assert result is not None and result.error is None, result
            mon.tick()
        decision = mon.verdicts()["m"]
        assert 1000 == decision.samples
        assert decision.value == pytest.approx(0.94)
        row = state.conn.execute("SELECT live_samples FROM registry_models").fetchone()
        assert (1000,) == row
        skipped = [e for e in logs if e["event"] == "observation_skipped"]
        reasons = sorted(str(e["reason"]).split(" ")[0] for e in skipped)
        assert ["at:", "samples:", "value:"] == reasons, skipped
    finally:
        mon.stop()
        state.close()


# -- 6. Secrets echoed back by a server ------------------------------------------------------

# Quote and backslash (JSON- and Python-escaped differently), URL-reserved characters and
# a non-ASCII letter: every encoding differs from the raw value.
ECHOED_PASSWORD = 'af-"PW\\8c/1e+2b=7f&é'


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """A debug page: answers 500 with the request it got, raw and re-encoded."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            form = urllib.parse.urlencode(json.loads(body), quote_via=urllib.parse.quote)
        except ValueError:
            form = ""
        page = b"\n".join(
            [
                b"request: " + self.requestline.encode(),
                b"body: " + body,
                b"body-b64: " + base64.b64encode(body),
                b"form: " + form.encode(),
            ]
        )
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, *_: object) -> None:
        return


def _leaked(text: str, secret: str) -> list[str]:
    """Encodings of ``secret`` found in ``text``, base64 runs decoded."""
    forms = {
        "raw": secret,
        "json": json.dumps(secret)[1:-1],
        "json-ascii": json.dumps(secret, ensure_ascii=True)[1:-1],
        "python": repr(secret)[1:-1],
        "url": urllib.parse.quote(secret, safe=""),
        "url-plus": urllib.parse.quote_plus(secret),
    }
    found = [name for name, form in forms.items() if form in text]
    for run in re.findall(r"[A-Za-z0-9+/]{16,}={0,2}", text):
        decoded = base64.b64decode(run + "=" * (-len(run) % 4), validate=False)
        if secret.encode() in decoded:
            found.append(f"base64 {run[:12]}…")
    return found


def test_a_server_echoing_the_password_leaks_it_nowhere(root: Path) -> None:
    """Airflow's token endpoint is a page echoing the request (the JSON body with the
    password, its base64 and its form encoding): the outbox error in the state DB,
    `status --json`, `history --json`, /healthz and the log hold none of the password's
    encodings (the raw one was redacted only in the log, and not when JSON-escaped)."""
    (root / "data" / "iris.csv").write_text("a,target\n1,0\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    env = daemon_env(
        root,
        WATCHER_TRIGGER__BACKEND="airflow",
        WATCHER_TRIGGER__AIRFLOW__URL=f"http://127.0.0.1:{server.server_address[1]}",
        WATCHER_TRIGGER__AIRFLOW__PASSWORD=ECHOED_PASSWORD,
        WATCHER_HTTP__LISTEN=f"127.0.0.1:{port}",
    )
    outputs: dict[str, str] = {}
    proc = start_daemon(root, env)
    try:

        def failed_twice() -> bool:
            if not (root / "state" / DB_NAME).exists():
                return False
            conn = db(root)
            try:
                row = conn.execute("SELECT max(attempts) FROM outbox").fetchone()
            except sqlite3.Error:
                return False
            finally:
                conn.close()
            return row is not None and (row[0] or 0) >= 2

        wait_for(failed_twice, 90, "two failed trigger deliveries", poll=0.3)
        outputs["/healthz"] = _get(f"http://127.0.0.1:{port}/healthz")
    finally:
        assert 0 == stop_daemon(proc)
        server.shutdown()
        server.server_close()
    for name, argv in {"status": ["status", "--json"], "history": ["history", "--json"]}.items():
        done = subprocess.run(
            [*WATCHER, *argv],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert 0 == done.returncode, (name, done.stderr)
        outputs[name] = done.stdout + done.stderr
    conn = db(root)
    try:
        outputs["state.db dump"] = "\n".join(conn.iterdump())
    finally:
        conn.close()
    outputs["daemon log"] = (root / "watcher.log").read_text()
    assert "body-b64" in outputs["state.db dump"], "the echo reached the stored error"
    assert "body-b64" in outputs["/healthz"]
    leaks = {name: _leaked(text, ECHOED_PASSWORD) for name, text in outputs.items()}
    assert {} == {name: found for name, found in leaks.items() if found}


def test_every_encoding_of_a_secret_is_redacted() -> None:
    """One registry for logs, stored and served strings: a registered secret is redacted
    raw, JSON- and Python-escaped, URL-encoded and in base64 at any offset (a Basic
    header's `user:password`)."""
    secret = 'Zq"9\\x/+=&ü-secret'
    register_secrets([secret])
    texts = [
        secret,
        json.dumps({"password": secret}),
        repr({"password": secret}),
        urllib.parse.urlencode({"password": secret}),
        urllib.parse.quote(secret),
        *(base64.b64encode(f"{p}{secret}tail".encode()).decode() for p in ("", "u:", "us:")),
    ]
    assert [] == [t for t in texts if _leaked(redact_text(t), secret)]
    assert "ordinary text" == redact_text("ordinary text")


def test_an_echo_cut_at_the_length_limit_leaks_no_part_of_the_secret() -> None:
    """Server replies are kept to 500 characters: redacted before the cut, so an echoed
    password straddling the limit does not leave its first half behind (#15 review)."""
    import httpx

    from watcher.backends.airflow import _detail

    secret = "Sup3rS3cretPassw0rd!-echo"
    register_secrets([secret])
    pad = "x" * (500 - len('{"password":"') - 10)
    for resp in (
        httpx.Response(502, text=f'{pad}{{"password":"{secret}"}}'),
        httpx.Response(502, json={"detail": f'{pad}{{"password":"{secret}"}}'}),
    ):
        detail = _detail(resp)
        assert secret[:10] not in detail, detail[-40:]
