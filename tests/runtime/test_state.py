"""State store: migrations, corruption and newer-schema errors, file modes."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from alerts import ensure_schema
from watcher.errors import StateError
from watcher.runtime.state import DB_NAME, MIGRATIONS, SCHEMA_VERSION, open_state


class TestMigrations:
    def test_fresh_db_is_latest(self, tmp_path: Path) -> None:
        """A new state DB is created at the latest schema version."""
        store = open_state(tmp_path)
        version = store.conn.execute("PRAGMA user_version").fetchone()[0]
        store.close()
        assert version == SCHEMA_VERSION

    def test_old_schema_migrates_and_keeps_data(self, tmp_path: Path) -> None:
        """A v1 database with data migrates forward; the data survives."""
        old = open_state(tmp_path, migrate_to=1)
        old.record("trigger.delivered", "old event", data_hash="abc")
        with old.transaction() as tx:
            tx.execute(
                "INSERT INTO outbox (run_id, data_hash, reason, conf, next_attempt_at, created_at)"
                " VALUES ('data__abc', 'abc', 'data', '{}', 'now', 'now')"
            )
        old.close()
        store = open_state(tmp_path)
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert [e.message for e in store.events()] == ["old event"]
        row = store.conn.execute("SELECT run_id, run_state FROM outbox").fetchone()
        store.close()
        assert tuple(row) == ("data__abc", None)

    def test_alert_tables_are_the_alerts_schema(self, tmp_path: Path) -> None:
        """The migration that adds the alert tables applies alerts' own schema: a state DB
        (migrated from before them) has exactly the tables a standalone store has."""
        open_state(tmp_path, migrate_to=2).close()
        store = open_state(tmp_path)
        standalone = sqlite3.connect(":memory:")
        ensure_schema(standalone)
        for table in ("alert_states", "alert_deliveries"):
            for pragma in ("table_info", "index_list"):
                query = f"PRAGMA {pragma}({table})"
                assert standalone.execute(query).fetchall() == store.conn.execute(query).fetchall()
        standalone.close()
        store.close()

    def test_released_migrations_never_change(self) -> None:
        """A migration already applied to users' DBs is frozen: an edit (say, to
        alerts.schema.SCHEMA, which migration 3 applies) would reach new DBs only. Change
        the schema with a new migration instead, and add its hash here."""
        released = [
            "714858d989872a74",
            "d83adc84a868829d",
            "82fbc81a2a07e2fc",
            "19fb6f0d35ac0288",
            "1763636b509c0df1",
        ]
        digests = [hashlib.sha256(m.encode()).hexdigest()[:16] for m in MIGRATIONS]
        assert released == digests[: len(released)]

    def test_newer_schema_is_refused(self, tmp_path: Path) -> None:
        """A DB from a newer release gives a clear error naming the file."""
        open_state(tmp_path).close()
        conn = sqlite3.connect(tmp_path / DB_NAME)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        with pytest.raises(StateError, match=rf"{DB_NAME}: .*newer than this release"):
            open_state(tmp_path)

    def test_corrupt_db_is_refused_not_reset(self, tmp_path: Path) -> None:
        """Garbage in the DB file is an error naming the file; the file is left alone."""
        path = tmp_path / DB_NAME
        path.write_bytes(b"this is not sqlite" * 100)
        with pytest.raises(StateError, match=rf"{DB_NAME}: state database is corrupt"):
            open_state(tmp_path)
        assert path.read_bytes() == b"this is not sqlite" * 100

    def test_a_directory_in_place_of_the_db_is_named(self, tmp_path: Path) -> None:
        """A directory named state.db is damage, not "no state yet": refused naming it."""
        (tmp_path / DB_NAME).mkdir()
        with pytest.raises(StateError, match=rf"{DB_NAME}: .*corrupt \(it is a directory\)"):
            open_state(tmp_path)

    def test_a_dangling_db_symlink_is_named_not_replaced(self, tmp_path: Path) -> None:
        """A symlink to a DB that is gone (an unmounted volume) is damage: a fresh empty
        state behind it would re-trigger every dataset."""
        (tmp_path / "volume").mkdir()
        target = tmp_path / "volume" / DB_NAME
        (tmp_path / "state").mkdir()
        (tmp_path / "state" / DB_NAME).symlink_to(target)
        with pytest.raises(StateError, match=rf"{DB_NAME}: .*corrupt \(it is a symlink to "):
            open_state(tmp_path / "state")
        assert not target.exists()


class TestStore:
    def test_files_are_private(self, tmp_path: Path) -> None:
        """The DB and its WAL files are 0600, the dir 0700."""
        store = open_state(tmp_path / "state")
        store.record("x", "y")
        for path in (tmp_path / "state").iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
        store.close()

    def test_dead_creators_temporary_files_are_removed(self, tmp_path: Path) -> None:
        """A creation killed mid-way (kill -9) leaves ``.state.db.new-<pid>``; the next
        creation removes it, but never the file of a creator that is still alive."""
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()  # a pid that certainly belonged to a process now dead
        dead = tmp_path / f".{DB_NAME}.new-{child.pid}"
        live = tmp_path / f".{DB_NAME}.new-{os.getppid()}"
        for leftover in (dead, dead.with_name(dead.name + "-wal"), live):
            leftover.write_bytes(b"")
        open_state(tmp_path).close()
        assert sorted(p.name for p in tmp_path.glob(f".{DB_NAME}.new-*")) == [live.name]

    def test_transaction_rolls_back(self, tmp_path: Path) -> None:
        """An exception inside a transaction leaves nothing half-written."""
        store = open_state(tmp_path)
        with pytest.raises(RuntimeError), store.transaction() as tx:
            store.record("a", "first", conn=tx)
            raise RuntimeError("boom")
        assert store.events() == []
        store.close()

    def test_events_filters(self, tmp_path: Path) -> None:
        """History filters by model and limit, oldest first."""
        store = open_state(tmp_path)
        for i in range(5):
            store.record("k", f"m{i}", model="a" if i % 2 else "b")
        assert [e.message for e in store.events(model="a")] == ["m1", "m3"]
        assert [e.message for e in store.events(limit=2)] == ["m3", "m4"]
        store.close()

    def test_unwritable_state_dir(self, tmp_path: Path) -> None:
        """A state dir that cannot be created names the path."""
        blocker = tmp_path / "file"
        blocker.write_text("x", encoding="utf-8")
        with pytest.raises(StateError, match="cannot create the state dir"):
            open_state(blocker / "state")
