"""SIGKILL of `watcher run` at seeded random moments of a scripted scenario, 20 times.

One state dir is shared by every iteration, so each start is the restart after the
previous kill. A restart must find an intact DB, never start a run twice, and never
lose or repeat a notification; the last (graceful) run must catch up with everything.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.lineage import compute_manifest
from tests.data.conftest import runs_ended
from tests.reliability.conftest import (
    daemon_env,
    db,
    delivered_file_keys,
    duplicates,
    integrity,
    jsonl,
    notification_keys,
    run_hashes,
    start_daemon,
    stop_daemon,
    wait_for,
)
from tests.runtime.conftest import wait_heartbeat

ITERATIONS = 20
SNAPSHOT_ITERATIONS = 10
SEED = 20260109


def _count(log: Path, event: str | None) -> int:
    if event is None or not log.exists():
        return 0
    return log.read_text().count(f'"event": "{event}"')


def _current_hash(data: Path) -> str:
    return compute_manifest(data).dataset_hash


@pytest.mark.slow
@pytest.mark.parametrize(
    ("iterations", "snapshots"), [(ITERATIONS, False), (SNAPSHOT_ITERATIONS, True)]
)
def test_sigkill_at_random_points(root: Path, iterations: int, snapshots: bool) -> None:
    """N x (start, maybe change data, SIGKILL at a random moment): after each kill the DB
    passes integrity_check, no data hash ran twice and no notification was written twice;
    a final clean run delivers the latest data exactly once and every pending notification.
    With snapshots, kills also land mid-freeze: every snapshot left is whole and the
    restart removes the half-built ones."""
    rng = random.Random(SEED)
    data = root / "data"
    (data / "iris.csv").write_text("a,b\n0,0\n")
    snap_dir = root / "snapshots"
    env = daemon_env(root, **({"WATCHER_WATCH__SNAPSHOT_DIR": str(snap_dir)} if snapshots else {}))
    alerts = root / "state" / "alerts.jsonl"
    kills_while_running = 0
    log = root / "watcher.log"
    for i in range(iterations):
        # Kill relative to a milestone: the spawn (imports, lock, migrations), "starting"
        # (first scan, trigger, drift check) or "ready" (deliveries, runs, polls, alerts).
        milestone = (None, "starting", "ready", "ready")[i % 4]
        seen = _count(log, milestone)
        proc = start_daemon(root, env)
        if milestone is not None:
            wait_for(lambda m=milestone, n=seen: _count(log, m) > n, 60, milestone, poll=0.02)  # type: ignore[misc]
        kill_at = rng.uniform(0.0, 3.0)
        change_at = rng.uniform(0.0, kill_at) if rng.random() < 0.7 else None
        started = time.monotonic()
        if change_at is not None:
            time.sleep(change_at)
            # Alternate an atomic save and an in-place append (both real editor habits).
            target = data / "iris.csv"
            if i % 2:
                tmp = data / ".iris.csv.tmp"
                tmp.write_text(target.read_text() + f"{i},{rng.randint(0, 9)}\n")
                tmp.replace(target)
            else:
                with target.open("a") as fh:
                    fh.write(f"{i},{rng.randint(0, 9)}\n")
        time.sleep(max(0.0, kill_at - (time.monotonic() - started)))
        if proc.poll() is None:
            kills_while_running += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert "ok" == integrity(root), f"iteration {i}"
        assert [] == duplicates(run_hashes(root)), f"iteration {i}: a data hash ran twice"
        assert [] == duplicates(notification_keys(alerts)), f"iteration {i}: repeated notice"
    assert iterations == kills_while_running, "the daemon died on its own before the kill"

    # The restart after the last kill: everything pending is caught up, once.
    final = _current_hash(data)
    seen = _count(log, "ready")
    proc = start_daemon(root, env)
    try:
        # Ready first: until its signal handlers are installed, SIGTERM kills it (-15).
        wait_for(lambda: _count(log, "ready") > seen, 120, "ready")
        wait_for(lambda: final in run_hashes(root), 60, "the latest data to run")
        wait_for(lambda: bool(notification_keys(alerts)), 30, "the MLflow-down notification")
        wait_for(lambda: delivered_file_keys(root)[1] == 0, 30, "pending notifications")
        # Instead of a pause: a heartbeat written from now on proves a full loop pass
        # (deliveries, alert dispatch) after everything was caught up.
        wait_heartbeat(root / "state", after=time.time())
    finally:
        assert 0 == stop_daemon(proc), (root / "watcher.log").read_text()[-3000:]
    wait_for(lambda: runs_ended(root / "state"), 60, "every started run to end")
    ran = run_hashes(root)
    assert [] == duplicates(ran)
    assert final == ran[-1]
    conn = db(root)
    try:
        delivered = {
            h for (h,) in conn.execute("SELECT data_hash FROM outbox WHERE status = 'delivered'")
        }
        pending = conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()
    finally:
        conn.close()
    # Every delivered trigger ran exactly once, nothing else ran, nothing is left pending.
    assert delivered == set(ran)
    assert 0 == pending[0]
    written = notification_keys(alerts)
    done, waiting = delivered_file_keys(root)
    assert [] == duplicates(written)
    assert sorted(done) == sorted(written)
    assert 0 == waiting
    assert written, "the scenario produced no notification at all"
    assert "ok" == integrity(root)
    if snapshots:
        assert [] == list(snap_dir.rglob(".tmp-*")), "a restart removes half-built snapshots"
        kept = [p for p in snap_dir.iterdir() if not p.name.startswith(".")]
        assert final in {p.name for p in kept}
        for path in kept:
            assert path.name == compute_manifest(path).dataset_hash


ROLLBACK_ITERATIONS = 10


def _polled_since(heartbeat: dict[str, Any], at: float) -> bool:
    success = heartbeat.get("checks", {}).get("monitor", {}).get("last_success")
    return success is not None and datetime.fromisoformat(success).timestamp() >= at


def _journal(root: Path) -> list[tuple[str, str, str]]:
    """(from_version, to_version, step) of every rollback the daemon journaled."""
    if not (root / "state" / "state.db").exists():
        return []
    conn = db(root)
    try:
        rows = conn.execute(
            "SELECT from_version, to_version, step FROM rollback_journal ORDER BY id"
        ).fetchall()
    except sqlite3.OperationalError:  # killed before the migration created the table
        return []
    finally:
        conn.close()
    return [(str(f), str(t), str(s)) for f, t, s in rows]


def _rolled_back_notices(alerts: Path) -> list[str]:
    return [
        str(n["labels"]["from_version"])  # type: ignore[index]
        for n in jsonl(alerts)
        if n["labels"]["alertname"] == "ModelRolledBack"  # type: ignore[index]
    ]


@pytest.mark.service
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_around_automatic_rollbacks_keeps_the_registry_consistent(
    root: Path, mlflow_server: str
) -> None:
    """A real registry: each round promotes a new version that reports bad accuracy, the
    daemon rolls it back automatically, and a SIGKILL lands at a seeded random moment
    (before, during or after the rollback). After every kill the model has a Production
    version that is not quarantined; no rollback is notified twice. A final clean run
    finishes every journaled rollback: each quarantined its version and was notified once."""
    from watcher.backends.mlflow_observations import report_accuracy
    from watcher.backends.mlflow_registry import MlflowRegistry
    from watcher.ports import TAG_PREVIOUS

    rng = random.Random(SEED + 1)
    model = f"kill-{uuid.uuid4().hex[:8]}"
    reg = MlflowRegistry(mlflow_server, "alias", max_retries=1, timeout=10)
    client: Any = reg.client
    client.create_registered_model(model)
    bad: set[str] = set()

    def promote_bad_version() -> None:
        previous = reg.production(model)
        version = str(client.create_model_version(model, source="s3://kill/model").version)
        if previous is not None:
            reg.set_tags(model, version, {TAG_PREVIOUS: previous})
        reg.set_production(model, version)
        report_accuracy(model, 0.2, 500, version=version, registry=reg)
        bad.add(version)

    stable = str(client.create_model_version(model, source="s3://kill/model").version)
    reg.set_production(model, stable)
    env = daemon_env(
        root,
        WATCHER_MLFLOW__TRACKING_URI=mlflow_server,
        WATCHER_MLFLOW__MAX_RETRIES="1",
        WATCHER_MLFLOW__REQUEST_TIMEOUT="10",
        WATCHER_MONITOR__MODELS=model,
        WATCHER_MONITOR__WINDOW="1",
        WATCHER_ROLLBACK__AUTO="true",
        WATCHER_ROLLBACK__COOLDOWN="0",
        WATCHER_ROLLBACK__MAX_PER_WINDOW="1000",
    )
    alerts = root / "state" / "alerts.jsonl"
    log = root / "watcher.log"
    for i in range(ROLLBACK_ITERATIONS):
        unfinished = [j for j in _journal(root) if j[2] != "done"]
        if not unfinished and reg.production(model) not in bad:
            promote_bad_version()
        # Kill relative to a milestone, not to a guess of how long `import mlflow` takes on
        # this box: the first scan + up to 1 s (before the first poll, which READY=1 waits
        # for) every third round, else the first poll's outcome + up to 3 s (the rollback
        # follows it within ~0.1 s): kills land before, during and after the rollback.
        milestone, spread = ("data_scanned", 1.0) if i % 3 == 0 else ("registry_first_poll", 3.0)
        seen = _count(log, milestone)
        proc = start_daemon(root, env)
        try:
            wait_for(lambda m=milestone, n=seen: _count(log, m) > n, 120, milestone, poll=0.01)  # type: ignore[misc]
            time.sleep(rng.uniform(0.0, spread))
            assert proc.poll() is None, log.read_text()[-3000:]
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        assert "ok" == integrity(root), f"iteration {i}"
        production = reg.production(model)
        assert production is not None, f"iteration {i}: the registry lost Production"
        info = reg.get_version(model, production)
        assert info is not None and not info.quarantined, f"iteration {i}: v{production}"
        assert [] == duplicates(notification_keys(alerts)), f"iteration {i}: repeated notice"

    # A clean run finishes whatever a kill interrupted and delivers every notice.
    seen = _count(log, "ready")
    proc = start_daemon(root, env)
    try:
        # Ready first: its signal handlers are installed, and recovery has run.
        wait_for(lambda: _count(log, "ready") > seen, 120, "ready")
        wait_for(
            lambda: (
                reg.production(model) not in bad
                and all(step == "done" for _, _, step in _journal(root))
                and len(_rolled_back_notices(alerts)) == len(_journal(root))
            ),
            60,
            "every rollback to finish and be notified",
        )
        # Instead of a pause: a heartbeat after a registry poll that started from now on
        # proves the loop handled that poll (and the rollback check after it) since.
        now = time.time()
        wait_heartbeat(
            root / "state",
            after=now,
            also=lambda doc: _polled_since(doc, now),
        )
    finally:
        assert 0 == stop_daemon(proc), log.read_text()[-3000:]
    journal = _journal(root)
    rolled_back = [from_version for from_version, _, _ in journal]
    assert len(journal) >= 2, "the scenario should roll back round after round"
    assert sorted(rolled_back) == sorted(set(rolled_back)), "each version rolled back once"
    assert set(rolled_back) <= bad
    assert sorted(rolled_back) == sorted(_rolled_back_notices(alerts)), "one notice each"
    assert stable == reg.production(model)
    for version in rolled_back:
        info = reg.get_version(model, version)
        assert info is not None and info.quarantined, f"v{version} not quarantined"
    assert "ok" == integrity(root)
