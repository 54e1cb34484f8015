"""Dataset snapshots: each triggered hash frozen, shared objects, stale and crash safety,
and the DataWatcher running every distinct hash once, in order, on its own bytes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.lineage import compute_manifest
from tests.data.conftest import (
    DataSide,
    OutageTrigger,
    change_while_down,
    drive,
    make_config,
    settle,
)
from watcher.app import build_trigger
from watcher.config import Config
from watcher.data.snapshots import OBJECTS, SnapshotStale, SnapshotStore
from watcher.runtime.state import open_state

# The `command` backend target: appends the run conf it was given as one JSON line.
RECORD_CONF = (
    "import json, sys\n"
    "conf = json.load(sys.stdin)\n"
    "with open(sys.argv[1], 'a') as fh:\n"
    "    fh.write(json.dumps(conf) + '\\n')\n"
)


def _data(root: Path, files: dict[str, str]) -> None:
    root.mkdir(exist_ok=True)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_freeze_is_the_same_dataset_read_only_and_shares_unchanged_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _data(data, {"a.csv": "x,y\n1,1\n", "sub/b.csv": "x,y\n2,2\n"})
    (data / "a.csv").chmod(0o600)
    store = SnapshotStore(tmp_path / "snaps", keep=5)
    m1 = compute_manifest(data)
    snap1 = store.freeze(data, m1)
    assert snap1 == tmp_path / "snaps" / m1.dataset_hash
    assert m1 == compute_manifest(snap1)
    # Never wider than the source, never writable.
    assert 0o400 == stat.S_IMODE((snap1 / "a.csv").stat().st_mode)
    assert 0o444 == stat.S_IMODE((snap1 / "sub/b.csv").stat().st_mode) & 0o666
    (data / "a.csv").write_text("x,y\n9,9\n")
    m2 = compute_manifest(data)
    snap2 = store.freeze(data, m2)
    assert m2 == compute_manifest(snap2)
    assert m1 == compute_manifest(snap1), "the older snapshot keeps its bytes"
    assert (snap1 / "sub/b.csv").stat().st_ino == (snap2 / "sub/b.csv").stat().st_ino
    assert 3 == len(list((tmp_path / "snaps" / OBJECTS).glob("*/*")))
    assert snap2 == store.freeze(data, m2), "freezing again reuses the snapshot"


def test_equal_bytes_with_other_permissions_get_their_own_object(tmp_path: Path) -> None:
    """Sharing by content must not widen (or narrow) what a file's readers may see."""
    data = tmp_path / "data"
    _data(data, {"public.csv": "x,y\n1,1\n", "private.csv": "x,y\n1,1\n"})
    (data / "private.csv").chmod(0o600)
    snap = SnapshotStore(tmp_path / "snaps", keep=5).freeze(data, compute_manifest(data))
    assert 0o444 == stat.S_IMODE((snap / "public.csv").stat().st_mode)
    assert 0o400 == stat.S_IMODE((snap / "private.csv").stat().st_mode)


def test_snapshot_dir_must_not_overlap_data_or_state(tmp_path: Path) -> None:
    from watcher.config import load_config
    from watcher.errors import ConfigError

    for snap, data in (("data/snaps", "data"), (".", "data"), ("state/snaps", "data")):
        with pytest.raises(ConfigError, match="overlap"):
            load_config(
                None,
                env={},
                overrides={
                    "watch.snapshot_dir": str(tmp_path / snap),
                    "watch.data_dir": str(tmp_path / data),
                    "state.dir": str(tmp_path / "state"),
                },
            )


def test_a_file_changed_after_hashing_is_stale_and_leaves_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _data(data, {"a.csv": "x,y\n1,1\n", "b.csv": "x,y\n2,2\n"})
    store = SnapshotStore(tmp_path / "snaps", keep=5)
    manifest = compute_manifest(data)
    (data / "b.csv").write_text("x,y\n3,3\n")
    with pytest.raises(SnapshotStale, match=r"b\.csv: changed after it was hashed"):
        store.freeze(data, manifest)
    (data / "b.csv").unlink()
    with pytest.raises(SnapshotStale, match=r"b\.csv: removed after it was hashed"):
        store.freeze(data, manifest)
    assert [] == store.snapshots()
    leftovers = [p.name for p in (tmp_path / "snaps").rglob("*") if p.name.startswith(".tmp-")]
    assert [] == leftovers


def test_litter_of_a_killed_freeze_is_removed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _data(data, {"a.csv": "x,y\n1,1\n"})
    snaps = tmp_path / "snaps"
    (snaps / ".tmp-deadbeef-123" / "half").mkdir(parents=True)
    (snaps / OBJECTS / "ab").mkdir(parents=True)
    (snaps / OBJECTS / "ab" / ".tmp-abcd-123").write_text("partial")
    store = SnapshotStore(snaps, keep=5)
    store.freeze(data, compute_manifest(data))
    assert [] == list(snaps.rglob(".tmp-*"))


def test_prune_keeps_needed_and_recent_and_frees_unshared_objects(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = SnapshotStore(tmp_path / "snaps", keep=2)
    made = []
    for i in range(5):
        _data(data, {"same.csv": "x,y\n0,0\n", "a.csv": f"x,y\n{i},{i + 1}\n"})
        m = compute_manifest(data)
        snap = store.freeze(data, m)
        os.utime(snap, ns=(i * 10**9, i * 10**9))  # creation order, whatever the fs clock
        made.append(m.dataset_hash)
    (tmp_path / "snaps" / "not-a-snapshot").mkdir()  # someone else's: never pruned
    removed = store.prune(needed={made[0]})
    assert (tmp_path / "snaps" / "not-a-snapshot").is_dir()
    assert sorted(made[1:3]) == sorted(removed)
    assert {made[0], made[3], made[4]} == {p.name for p in store.snapshots()}
    objects = list((tmp_path / "snaps" / OBJECTS).glob("*/*"))
    assert 4 == len(objects), "same.csv once, plus one a.csv per kept snapshot"
    for h in (made[0], made[3], made[4]):
        assert h == compute_manifest(store.path_for(h)).dataset_hash


def _snapshot_config(tmp_path: Path) -> tuple[Config, Path]:
    """Snapshots in tmp/snaps; the command backend appends each run conf to the path."""
    record = tmp_path / "confs.jsonl"
    cfg = make_config(
        tmp_path,
        **{
            "watch.snapshot_dir": str(tmp_path / "snaps"),
            "trigger.command": [sys.executable, "-c", RECORD_CONF, str(record)],
        },
    )
    return cfg, record


@contextlib.contextmanager
def _running(cfg: Config) -> Iterator[tuple[DataSide, OutageTrigger]]:
    """A started data side whose backend can be switched off; stopped afterwards."""
    cfg.watch.data_dir.mkdir(exist_ok=True)
    state = open_state(cfg.state.dir)
    trigger = OutageTrigger(build_trigger(cfg))
    dw = DataSide(cfg, state, trigger=trigger, progress=False, follow_interval=0.2)
    try:
        dw.start()
        yield dw, trigger
    finally:
        dw.stop()
        state.close()


def _confs(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_outage_with_two_changes_runs_each_hash_once_in_order_on_its_own_bytes(
    tmp_path: Path,
) -> None:
    """Snapshot mode: delivered O; backend down while the data goes to A, then B; when it
    returns, A then B run, each on a frozen copy that hashes to its own data_hash. Data
    going back to A while A and B wait drops B (the last run must train current data)."""
    cfg, record = _snapshot_config(tmp_path)
    data = cfg.watch.data_dir
    with _running(cfg) as (dw, trigger):
        (data / "a.csv").write_text("x,y\n0,0\n")
        drive(dw, lambda: len(_confs(record)) == 1)
        hashes = change_while_down(dw, trigger, data / "a.csv", ["1,1", "2,2"])
        assert [hashes] == [[r.data_hash for r in dw.outbox.pending()]]
        trigger.down = False
        drive(dw, lambda: len(_confs(record)) == 3, timeout=30)
        settle(dw)
        ran = _confs(record)[1:]
        assert hashes == [c["data_hash"] for c in ran]
        for conf in ran:
            assert str(data.absolute()) == conf["source_dir"]
            assert conf["data_hash"] == compute_manifest(conf["data_dir"]).dataset_hash

        # Back to an earlier hash while two triggers wait: the later one is dropped.
        trigger.down = True
        for row in ("3,3", "4,4", "3,3"):
            (data / "a.csv").write_text(f"x,y\n{row}\n")
            h = compute_manifest(data).dataset_hash
            drive(dw, lambda h=h: dw.status.last_hash == h)  # type: ignore[misc]
        trigger.down = False
        drive(dw, lambda: len(_confs(record)) == 4, timeout=30)
        settle(dw)
        assert [h] == [c["data_hash"] for c in _confs(record)[3:]]
        assert (
            1
            == dw.state.conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE status = 'superseded'"
            ).fetchone()[0]
        )


def test_a_failing_snapshot_holds_the_trigger_with_a_reason(tmp_path: Path) -> None:
    """The snapshot dir cannot be created: no run on live data, the error is in health;
    once it can, the held trigger goes out."""
    cfg, record = _snapshot_config(tmp_path)
    # After the config is built: the config itself refuses a snapshot_dir that is a file.
    snaps = tmp_path / "snaps"
    snaps.write_text("a file where the dir should be")
    data = cfg.watch.data_dir
    _data(data, {"a.csv": "x,y\n1,1\n"})
    state = open_state(cfg.state.dir)
    dw = DataSide(cfg, state, progress=False, follow_interval=0.2)
    try:
        dw.start()
        drive(dw, lambda: dw.status.last_error is not None)
        assert "trigger held" in str(dw.health().detail["error"])
        settle(dw)
        assert [] == _confs(record)
        assert [] == dw.outbox.pending()
        snaps.unlink()
        drive(dw, lambda: len(_confs(record)) == 1, timeout=30)
        assert dw.status.last_error is None
        drive(dw, lambda: not dw.outbox.following())  # the child has exited
    finally:
        dw.stop()
        state.close()


def test_back_at_a_delivered_hash_drops_what_was_queued_after_it(tmp_path: Path) -> None:
    """A and B delivered; C queued during an outage; the data goes back to A: C is dropped
    (its snapshot could run, but the last run must train the current data) and A, which
    ran already, is not run again."""
    cfg, record = _snapshot_config(tmp_path)
    data = cfg.watch.data_dir
    with _running(cfg) as (dw, trigger):
        delivered = []
        for line in ("1,1", "2,2"):
            (data / "a.csv").write_text(f"x,y\n{line}\n")
            delivered.append(compute_manifest(data).dataset_hash)
            count = len(delivered)
            drive(dw, lambda n=count: len(_confs(record)) == n)  # type: ignore[misc]
        (c,) = change_while_down(dw, trigger, data / "a.csv", ["3,3"])
        (data / "a.csv").write_text("x,y\n1,1\n")
        drive(dw, lambda: dw.status.last_hash == delivered[0])
        trigger.down = False
        settle(dw)
        assert delivered == [x["data_hash"] for x in _confs(record)], "A is not run again"
        row = dw.outbox.get(f"data__{c}")
        assert row is not None and "superseded" == row.status
        drive(dw, lambda: not dw.outbox.following())


def test_a_stale_cached_digest_is_forgotten_and_the_data_rehashed(tmp_path: Path) -> None:
    """A writer that restores the mtime leaves the hash cache with an old digest (as in
    git and DVC, invisible on its own). When that file must be copied into a snapshot,
    the copy's check catches it and the next scan re-reads the file instead of the
    trigger being held forever: the run gets the true dataset hash."""
    cfg, record = _snapshot_config(tmp_path)
    data = cfg.watch.data_dir
    _data(data, {"a.csv": "x,y\n1,1\n", "b.csv": "x,y\n5,5\n"})
    old = 1_600_000_000 * 10**9  # long before the scan: the cache trusts it
    os.utime(data / "a.csv", ns=(old, old))
    state = open_state(cfg.state.dir)
    dw = DataSide(cfg, state, progress=False, follow_interval=0.2)
    try:
        dw.start()
        drive(dw, lambda: len(_confs(record)) == 1)
        drive(dw, lambda: not dw.outbox.following())
        shutil.rmtree(tmp_path / "snaps")  # as if pruned: a.csv's old bytes are gone
        (data / "a.csv").write_text("x,y\n2,2\n")  # same size, same inode...
        os.utime(data / "a.csv", ns=(old, old))  # ...and the old mtime
        (data / "b.csv").write_text("x,y\n6,6\n")
        truth = compute_manifest(data).dataset_hash
        drive(dw, lambda: len(_confs(record)) == 2, timeout=30)
        conf = _confs(record)[1]
        assert truth == conf["data_hash"] == compute_manifest(conf["data_dir"]).dataset_hash
        drive(dw, lambda: not dw.outbox.following())
    finally:
        dw.stop()
        state.close()


def test_a_retrain_trains_the_frozen_snapshot_and_each_request_runs(tmp_path: Path) -> None:
    """Snapshot mode: a requested retrain runs on the current hash's snapshot (its source
    named), and a second request does not supersede the first: both run, in order."""
    cfg, record = _snapshot_config(tmp_path)
    (cfg.watch.data_dir).mkdir()
    (cfg.watch.data_dir / "a.csv").write_text("x,y\n1,1\n")
    with _running(cfg) as (dw, _):
        drive(dw, lambda: len(_confs(record)) == 1 and not dw.outbox.following())
        data_hash = _confs(record)[0]["data_hash"]
        ids = [dw.delivery.request_retrain(f"rollback {n}") for n in (1, 2)]
        drive(dw, lambda: len(_confs(record)) == 3 and not dw.outbox.following())
    assert [f"retrain__{data_hash}__1", f"retrain__{data_hash}__2"] == ids
    first, second = _confs(record)[1:]
    assert ["rollback 1", "rollback 2"] == [first["note"], second["note"]]
    assert str(tmp_path / "snaps" / data_hash) == second["data_dir"]
    assert str(cfg.watch.data_dir.absolute()) == second["source_dir"]
