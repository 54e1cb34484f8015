"""Outbox retry/backoff and the child-process trigger backends (command, local)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline.config import from_conf
from pipeline.lineage import compute_manifest
from tests.data.conftest import DataSide, drive, make_config, runs
from watcher.backends.child import CommandTrigger, LocalTrigger
from watcher.ports import SubmitResult, TriggerUnavailable
from watcher.runtime.state import StateStore, iso
from watcher.trigger.base import wait_terminal
from watcher.trigger.outbox import Outbox, backoff

H1, H2 = "a" * 64, "b" * 64
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_backoff_doubles_with_jitter_and_caps() -> None:
    """Delays double from retry_initial, stay within [base/2, base], and cap at retry_max."""
    assert [2.5, 5.0, 10.0, 300.0] == [backoff(n, 5, 600, 0.0) for n in (1, 2, 3, 9)]
    assert [5.0, 10.0, 600.0] == [backoff(n, 5, 600, 1.0) for n in (1, 2, 12)]


def test_pending_survives_reopen_and_newer_data_supersedes(
    tmp_path: Path, state: StateStore
) -> None:
    """A queued trigger is durable; a newer hash supersedes it; A→B→A reactivates A."""
    box = Outbox(state)
    assert box.enqueue(f"data__{H1}", H1, "data_changed", {"data_hash": H1}, T0)
    assert not box.enqueue(f"data__{H1}", H1, "data_changed", {"data_hash": H1}, T0)
    assert [H1] == [r.data_hash for r in Outbox(state).pending()]
    assert box.enqueue(f"data__{H2}", H2, "data_changed", {"data_hash": H2}, T0)
    assert [H2] == [r.data_hash for r in box.pending()]
    assert box.enqueue(f"data__{H1}", H1, "data_changed", {"data_hash": H1}, T0)
    assert [H1] == [r.data_hash for r in box.pending()]


def test_without_superseding_every_hash_waits_in_order_until_the_data_goes_back(
    state: StateStore,
) -> None:
    """Snapshot mode: A, B and C all stay queued in order; data back at A drops B and C;
    back at a hash with no row (or the last delivered one) drops every later trigger."""
    h3 = "c" * 64
    box = Outbox(state)
    for h in (H1, H2, h3):
        assert box.enqueue(f"data__{h}", h, "data_changed", {"data_hash": h}, T0, supersede=False)
    assert [H1, H2, h3] == [r.data_hash for r in box.pending()]
    assert 0 == box.supersede_after(h3, T0)
    assert 2 == box.supersede_after(H1, T0)
    assert [H1] == [r.data_hash for r in box.pending()]
    assert 1 == box.supersede_after("d" * 64, T0)
    assert [] == box.pending()
    (reason,) = state.conn.execute(
        "SELECT last_error FROM outbox WHERE data_hash = ?", (H2,)
    ).fetchone()
    assert reason.startswith(f"data went back to {H1}")
    # Revived triggers queue at the end, in the order the data came back to them.
    assert box.enqueue(f"data__{h3}", h3, "data_changed", {}, T0, supersede=False)
    assert box.enqueue(f"data__{H2}", H2, "data_changed", {}, T0, supersede=False)
    assert [h3, H2] == [r.data_hash for r in box.pending()]


def test_retry_then_delivery_records_history(state: StateStore) -> None:
    """An unavailable backend is retried after a backoff; success updates the meta hash."""

    class Flaky:
        calls = 0
        serial = False

        def submit(self, run_id: str, conf: Mapping[str, Any]) -> SubmitResult:
            self.calls += 1
            if self.calls == 1:
                raise TriggerUnavailable("connection refused")
            return SubmitResult(run_id, created=False)

    box = Outbox(state, retry_initial=10, retry_max=60, rng=lambda: 1.0)
    box.enqueue(f"data__{H1}", H1, "data_changed", {"data_hash": H1}, T0)
    flaky = Flaky()
    (row,) = box.pending()
    try:
        flaky.submit(row.run_id, row.conf)
    except TriggerUnavailable as exc:
        assert 10.0 == box.mark_retry(row, str(exc), now=T0, permanent=False)
    (row,) = box.pending()
    assert iso(T0 + timedelta(seconds=10)) == row.next_attempt_at
    result = flaky.submit(row.run_id, row.conf)
    box.mark_delivered(row, created=result.created, run_state=None, now=T0)
    assert H1 == box.last_delivered_hash()
    assert ["trigger.queued", "trigger.retrying", "trigger.delivered"] == [
        e.kind for e in state.events()
    ]


def test_command_trigger_stdin_idempotent_and_restart_safe(tmp_path: Path) -> None:
    """Conf arrives as JSON on stdin; a second submit is 'already exists'; a new instance
    (restarted daemon) still learns the outcome from the exit file."""
    out = tmp_path / "conf.json"
    script = "import sys; open(sys.argv[1], 'w').write(sys.stdin.read()); sys.exit(3)"
    argv = [sys.executable, "-c", script, str(out)]
    trig = CommandTrigger(tmp_path / "runs", argv)
    conf = {"data_hash": H1, "data_dir": "/d", "file_count": 1, "bytes": 2, "reason": "x"}
    assert trig.submit("data__x", conf).created
    assert not trig.submit("data__x", conf).created
    assert "failed" == wait_terminal(trig, "data__x", 30)
    assert conf == json.loads(out.read_text())
    again = CommandTrigger(tmp_path / "runs", argv)
    assert ("failed", 3) == (again.run_state("data__x"), again.exit_code("data__x"))
    assert again.run_state("data__unknown") is None


def test_local_trigger_passes_the_run_conf(tmp_path: Path) -> None:
    """The local backend runs `python -m pipeline.run` with the run conf (settings and why
    it triggered) as --conf, never through a shell."""
    trig = LocalTrigger(tmp_path / "runs")
    conf = {"data_dir": "/data dir", "data_hash": H1, "file_count": 3, "model_name": "m x"}
    argv = trig.argv("data__y", conf)
    assert [sys.executable, "-m", "pipeline.run", "--data-dir", "/data dir"] == argv[:5]
    assert ["--data-hash", H1, "--dag-run-id", "data__y"] == argv[5:9]
    assert ["--conf", '{"file_count": 3, "model_name": "m x"}'] == argv[9:]
    # A data dir that does not exist: the pipeline exits 2 (bad input) → run failed.
    trig = LocalTrigger(tmp_path / "runs", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    trig.submit("data__z", {"data_dir": str(tmp_path / "missing"), "data_hash": H1})
    assert "failed" == wait_terminal(trig, "data__z", 120)
    assert 2 == trig.exit_code("data__z")


SETTINGS = {
    "pipeline.model_name": "churn",
    "pipeline.target_column": "label",
    "pipeline.threshold": "0.5",
    "pipeline.promote": "never",
    "pipeline.n_estimators": "10",
    "pipeline.max_depth": "2",
    "mlflow.registry_mode": "stage",
}


def test_every_run_conf_carries_the_pipeline_settings(tmp_path: Path, state: StateStore) -> None:
    """Issue 13: the run conf carried only why it triggered, so Airflow trained with the
    worker's defaults (100 trees, promote if_better) whatever the watcher's config said.
    Now the effective settings travel with every run, and the pipeline reads them back;
    the run id is still ``data__<hash>`` (exactly-once does not depend on the conf)."""
    out = tmp_path / "conf.json"
    script = "import sys; open(sys.argv[1], 'w').write(sys.stdin.read())"
    config = make_config(
        tmp_path, trigger__command=[sys.executable, "-c", script, str(out)], **SETTINGS
    )
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x,label\n1,0\n")
    data_hash = compute_manifest(tmp_path / "data").dataset_hash
    dw = DataSide(config, state, follow_interval=0.1)
    dw.start()
    try:
        drive(
            dw,
            lambda: (
                (r := dw.outbox.get(f"data__{data_hash}")) is not None and r.finished_at is not None
            ),
        )
    finally:
        dw.stop()
    conf = json.loads(out.read_text())
    assert {
        "model_name": "churn",
        "target": "label",
        "threshold": 0.5,
        "promote": "never",
        "n_estimators": 10,
        "max_depth": 2,
        "registry_mode": "stage",
    }.items() <= conf.items()
    assert data_hash == conf["data_hash"]
    # The pipeline takes them from the conf over its worker's env defaults.
    env = {"WATCHER_PROMOTE": "always", "WATCHER_MODEL_NAME": "other"}
    cfg = from_conf(conf, environ=env)
    assert ("churn", "never", "stage", 10, 2, 0.5, "label") == (
        cfg.model_name, cfg.promote, cfg.registry_mode, cfg.n_estimators, cfg.max_depth,
        cfg.threshold, cfg.target,
    )  # fmt: skip
    # The local backend hands the same conf to `python -m pipeline.run`.
    argv = LocalTrigger(tmp_path / "runs").argv(f"data__{data_hash}", conf)
    assert conf == {
        **json.loads(argv[-1]), "data_dir": argv[4], "data_hash": argv[6]
    }  # fmt: skip


def test_a_requested_retrain_runs_the_current_data_under_a_numbered_id(
    tmp_path: Path, state: StateStore
) -> None:
    """Rollback's retrain goes to the delivery: nothing to retrain before data was hashed;
    then each request queues the current data as ``retrain__<hash>__<n>`` (without
    snapshots a newer request supersedes an undelivered one, like newer data does)."""
    config = make_config(tmp_path)
    (tmp_path / "data").mkdir()
    dw = DataSide(config, state, follow_interval=0.1)
    assert dw.delivery.request_retrain("before any data") is None
    (tmp_path / "data" / "a.csv").write_text("x,y\n1,1\n")
    data_hash = compute_manifest(tmp_path / "data").dataset_hash
    dw.start()
    try:
        drive(dw, lambda: runs(tmp_path) == [data_hash] and not dw.outbox.following())
        ids = [dw.delivery.request_retrain(f"rollback {n}") for n in (1, 2)]
        assert [f"retrain__{data_hash}__1", f"retrain__{data_hash}__2"] == ids
        drive(dw, lambda: len(runs(tmp_path)) == 2 and not dw.outbox.following())
    finally:
        dw.stop()
    first, second = (dw.outbox.get(i) for i in ids if i is not None)
    assert first is not None and first.status == "superseded"
    assert second is not None and second.status == "delivered" and second.run_state == "success"
    want = {"reason": "retrain", "note": "rollback 2", "data_hash": data_hash}
    assert want.items() <= second.conf.items()
    assert str(tmp_path / "data") == second.conf["data_dir"]
    assert [data_hash] * 2 == runs(tmp_path)
