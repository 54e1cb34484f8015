"""SIGKILL of `watcher run` at seeded random moments of a scripted scenario, 20 times.

One state dir is shared by every iteration, so each start is the restart after the
previous kill. A restart must find an intact DB, never start a run twice, and never
lose or repeat a notification; the last (graceful) run must catch up with everything.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest

from pipeline.lineage import compute_manifest
from tests.reliability.conftest import (
    daemon_env,
    db,
    delivered_file_keys,
    duplicates,
    integrity,
    notification_keys,
    run_hashes,
    start_daemon,
    stop_daemon,
    wait_for,
)

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
    proc = start_daemon(root, env)
    try:
        wait_for(lambda: final in run_hashes(root), 60, "the latest data to run")
        wait_for(lambda: bool(notification_keys(alerts)), 30, "the MLflow-down notification")
        wait_for(lambda: delivered_file_keys(root)[1] == 0, 30, "pending notifications")
        time.sleep(1.0)  # room for a (wrong) second run or notification
    finally:
        assert 0 == stop_daemon(proc), (root / "watcher.log").read_text()[-3000:]
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
