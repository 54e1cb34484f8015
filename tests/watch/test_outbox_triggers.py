"""Outbox retry/backoff and the child-process trigger backends (command, local)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from watcher.outbox import Outbox, backoff
from watcher.state import StateStore, iso
from watcher.trigger_airflow import SubmitResult, TriggerUnavailable
from watcher.triggers import CommandTrigger, LocalTrigger, wait_terminal

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


def test_local_trigger_passes_the_pipeline_flags(tmp_path: Path) -> None:
    """The local backend runs `python -m pipeline.run` with the configured flags (no shell)."""
    trig = LocalTrigger(
        tmp_path / "runs", model_name="m x", registry_mode="alias", promote="never", threshold=0.8
    )
    argv = trig.argv("data__y", {"data_dir": "/data dir", "data_hash": H1, "file_count": 3})
    assert [sys.executable, "-m", "pipeline.run", "--data-dir", "/data dir"] == argv[:5]
    assert ["--model-name", "m x", "--registry-mode", "alias"] == argv[7:11]
    assert ["--dag-run-id", "data__y"] == argv[-4:-2]
    # Why it triggered travels as a run conf, recorded on the training run.
    assert ["--conf", '{"file_count": 3}'] == argv[-2:]
    # A data dir that does not exist: the pipeline exits 2 (bad input) → run failed.
    trig = LocalTrigger(
        tmp_path / "runs", model_name="m", registry_mode="alias", promote="never", threshold=0.8,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
    )  # fmt: skip
    trig.submit("data__z", {"data_dir": str(tmp_path / "missing"), "data_hash": H1})
    assert "failed" == wait_terminal(trig, "data__z", 120)
    assert 2 == trig.exit_code("data__z")
