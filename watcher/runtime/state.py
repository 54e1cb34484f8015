"""The state store: SQLite (WAL) in the state dir, versioned schema, forward migrations.

Holds dataset snapshots and the per-file hash cache, the trigger outbox,
registry observations, alerts, the rollback journal and the append-only event
history. A corrupt DB or one written by a newer release is an error naming the
file, never a silent reset.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alerts.redaction import redact, redact_data
from alerts.schema import SCHEMA as ALERTS_SCHEMA
from watcher.errors import StateError

DB_NAME = "state.db"
# Every meta key, in one place (the module named after each writes it; status reads them).
META_WRITE_PROBE = "state.write_probe_at"  # health: the DB still takes writes
META_HEARTBEAT = "heartbeat"  # runtime.daemon: {"pid", "at", "checks": ...}
HEARTBEAT_EVERY = 5.0  # seconds between the daemon's heartbeats (status: stale after 6)
META_POLICY = "monitor.policy"  # monitor: {model: {"version", "status", ...}}
META_LAST_POLL = "monitor.last_success"  # monitor: so /metrics has it from the start
META_DAG = "trigger.dag"  # trigger.delivery: {"dag_id", "paused", "since", "unpause"} for status
META_LAST_DELIVERED = "data.last_delivered_hash"  # trigger.outbox
META_LAST_RUN = "data.last_delivered_run_id"  # trigger.outbox
META_ROLLBACK_HANDLED = "rollback.handled"  # rollback.journal: {model: {version: why}}

# Each entry migrates from version i to i+1. Never edit a released entry: append.
MIGRATIONS: tuple[str, ...] = (
    # 1: history, hash cache, snapshots, trigger outbox, daemon heartbeat.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        model TEXT,
        version TEXT,
        data_hash TEXT,
        message TEXT NOT NULL,
        payload TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_at ON events(at);
    CREATE INDEX events_model ON events(model, at);
    CREATE TABLE file_cache (
        path TEXT PRIMARY KEY,
        dev INTEGER NOT NULL,
        ino INTEGER NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    );
    CREATE TABLE snapshots (
        data_hash TEXT PRIMARY KEY,
        first_seen TEXT NOT NULL,
        last_seen TEXT NOT NULL,
        file_count INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL UNIQUE,
        data_hash TEXT NOT NULL,
        reason TEXT NOT NULL,
        conf TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        last_error TEXT,
        created_at TEXT NOT NULL,
        delivered_at TEXT
    );
    CREATE INDEX outbox_status ON outbox(status, next_attempt_at);
    """,
    # 2: follow triggered runs to completion; registry observations; rollback journal.
    """
    ALTER TABLE outbox ADD COLUMN run_state TEXT;
    ALTER TABLE outbox ADD COLUMN finished_at TEXT;
    CREATE TABLE registry_models (
        model TEXT PRIMARY KEY,
        production_version TEXT,
        versions TEXT NOT NULL DEFAULT '[]',
        observed_at TEXT NOT NULL
    );
    CREATE TABLE rollback_journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model TEXT NOT NULL,
        from_version TEXT NOT NULL,
        to_version TEXT NOT NULL,
        step TEXT NOT NULL,
        reason TEXT NOT NULL,
        actor TEXT NOT NULL,
        automatic INTEGER NOT NULL DEFAULT 0,
        undo INTEGER NOT NULL DEFAULT 0,
        started_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX rollback_model ON rollback_journal(model, started_at);
    """,
    # 3: alert lifecycle states and the notification delivery outbox: alerts/schema.py owns
    # their schema (and keeps it as released: a change to it is a new migration here).
    ALERTS_SCHEMA,
    # 4: built-in evaluator (watcher/monitor/evaluator.py): feedback content already scored, per
    # content hash (a copy or rename is not scored twice) and per path (CSV appends).
    """
    CREATE TABLE feedback_scored (
        sha256    TEXT PRIMARY KEY,
        path      TEXT NOT NULL,
        rows      INTEGER NOT NULL,
        model     TEXT NOT NULL,
        version   TEXT NOT NULL,
        scored_at TEXT NOT NULL
    );
    CREATE TABLE feedback_files (
        path   TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL,
        size   INTEGER NOT NULL,
        rows   INTEGER NOT NULL
    );
    """,
    # 5: what `watcher status` shows per model without asking MLflow (monitor.py writes).
    """
    ALTER TABLE registry_models ADD COLUMN training_accuracy REAL;
    ALTER TABLE registry_models ADD COLUMN live_accuracy REAL;
    ALTER TABLE registry_models ADD COLUMN live_samples INTEGER;
    """,
    # 6: the live metric watched per model (#19): accuracy or any other; live_accuracy
    # stays filled for accuracy (what older readers of the table know).
    """
    ALTER TABLE registry_models ADD COLUMN live_metric TEXT;
    ALTER TABLE registry_models ADD COLUMN live_value REAL;
    """,
    # 7: event-driven inputs (#18): MLflow webhook deliveries already handled (a replayed
    # delivery id is refused), and live observations posted to the daemon's intake
    # (POST /v1/accuracy), kept durably before the 202 and read by the monitor's poll.
    """
    CREATE TABLE webhook_deliveries (
        delivery_id TEXT PRIMARY KEY,
        event       TEXT NOT NULL,
        received_at TEXT NOT NULL
    );
    CREATE INDEX webhook_deliveries_at ON webhook_deliveries(received_at);
    CREATE TABLE intake_observations (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        model       TEXT NOT NULL,
        version     TEXT NOT NULL,
        metric      TEXT NOT NULL,
        value       REAL NOT NULL,
        samples     INTEGER NOT NULL,
        at          TEXT NOT NULL,
        received_at TEXT NOT NULL
    );
    CREATE INDEX intake_observations_key ON intake_observations(model, version, at);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    at: str
    kind: str
    model: str | None
    version: str | None
    data_hash: str | None
    message: str
    payload: dict[str, Any]


class StateStore:
    """One connection per thread that uses it; open with :func:`open_state`."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    # Transactions --------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT; rolls back on any exception."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _state_error(self.path, exc) from None
        try:
            yield self.conn
        except sqlite3.Error as exc:
            # A statement of the body failed (read-only file, disk full): name the file.
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise _state_error(self.path, exc) from None
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise _state_error(self.path, exc) from None

    def close(self) -> None:
        self.conn.close()

    # History -------------------------------------------------------------

    def record(
        self,
        kind: str,
        message: str,
        *,
        model: str | None = None,
        version: str | None = None,
        data_hash: str | None = None,
        payload: dict[str, Any] | None = None,
        at: datetime | None = None,
        conn: sqlite3.Connection | None = None,
    ) -> int:
        """Append an event; inside a caller's transaction when ``conn`` is given. Secrets
        (a server's echo in an error) are redacted: the history is served as is."""
        sql = (
            "INSERT INTO events (at, kind, model, version, data_hash, message, payload) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)"
        )
        args = (
            iso(at or utcnow()),
            kind,
            model,
            version,
            data_hash,
            redact(message),
            json.dumps(redact_data(payload or {}), sort_keys=True, default=str),
        )
        if conn is not None:
            return int(conn.execute(sql, args).lastrowid or 0)
        with self.transaction() as tx:
            return int(tx.execute(sql, args).lastrowid or 0)

    def events(
        self,
        *,
        since: datetime | None = None,
        model: str | None = None,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        where: list[str] = []
        args: list[Any] = []
        if since is not None:
            where.append("at >= ?")
            args.append(iso(since))
        if model is not None:
            where.append("model = ?")
            args.append(model)
        if kinds:
            where.append(f"kind IN ({','.join('?' * len(kinds))})")
            args.extend(kinds)
        cols = "id, at, kind, model, version, data_hash, message, payload"
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        # Newest N, returned oldest first; only placeholders and fixed text are interpolated.
        sql = f"SELECT {cols} FROM events{clause} ORDER BY id DESC LIMIT ?"  # noqa: S608
        args.append(-1 if limit is None else limit)
        rows = self.conn.execute(sql, args).fetchall()[::-1]
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows]

    # Small key/value facts (last delivered hash, heartbeat, …) ---------------

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str, conn: sqlite3.Connection | None = None) -> None:
        sql = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = ?"
        if conn is not None:
            conn.execute(sql, (key, value, value))
            return
        with self.transaction() as tx:
            tx.execute(sql, (key, value, value))

    def check_writable(self) -> None:
        """Prove the DB takes a committed write now (a read-only file or mount, a full
        disk); StateError naming the file otherwise. One tiny meta row, overwritten."""
        self.set_meta(META_WRITE_PROBE, iso(utcnow()))

    def integrity_ok(self) -> bool:
        row = self.conn.execute("PRAGMA integrity_check").fetchone()
        return row is not None and row[0] == "ok"


def _corrupt(path: Path, why: str) -> StateError:
    return StateError(
        f"{path}: state database is corrupt ({why}); restore it from a backup "
        "or move it aside to start from an empty state"
    )


def refuse_not_a_file(path: Path) -> None:
    """A directory, FIFO or device where the DB belongs is damage: name it rather than
    take it for "no state yet" (status) or fail later with SQLite's "unable to open"."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():  # not "none yet": the DB it names is gone (or unmounted)
            why = f"it is a symlink to {path.readlink()}, which does not exist"
            raise _corrupt(path, why) from None
        return  # none yet
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise _corrupt(path, f"it is {kind}")


def refuse_empty(path: Path) -> None:
    """SQLite takes a 0-byte file for a new database; ours never is one (see
    :func:`_create_private`), so it is damage: refuse it rather than lose the history."""
    if path.stat().st_size == 0:
        raise _corrupt(path, "the file is empty, 0 bytes")


def _state_error(path: Path, exc: BaseException) -> StateError:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return _corrupt(path, text)
    if "disk" in text and "full" in text:
        return StateError(f"{path}: disk full while writing the state database")
    if "readonly" in text or "unable to open" in text:
        return StateError(f"{path}: cannot write the state database ({text})")
    return StateError(f"{path}: state database error: {text}")


def read_error(path: Path, exc: sqlite3.Error) -> StateError:
    """A failed read (status, history): damage named as such, like :func:`open_state`."""
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return _corrupt(path, text)
    return StateError(f"{path}: cannot read the state database: {text}")


def _create_private(path: Path) -> None:
    """Create the DB file 0600 (never world-readable) with its SQLite header written, under
    a temporary name linked into place: a ``state.db`` of 0 bytes is then never one we
    were creating (a crash mid-creation leaves only the temporary file) but damage."""
    if path.exists():
        return
    _remove_stale_creations(path)
    tmp = path.with_name(f".{path.name}.new-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # writes the header page
        finally:
            conn.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError:
            if not path.exists():  # no hard links on this filesystem
                tmp.rename(path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale_creations(path: Path) -> None:
    """Remove the temporary files of creations whose process died (kill -9 mid-creation):
    the name carries the creator's pid, and a live creator's file is left alone."""
    for tmp in path.parent.glob(f".{path.name}.new-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def migrate(conn: sqlite3.Connection, path: Path, target: int = SCHEMA_VERSION) -> int:
    """Apply forward migrations up to ``target``; returns the version found before."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise StateError(
            f"{path}: state database has schema version {found}, newer than this release "
            f"understands ({SCHEMA_VERSION}); upgrade registry-watcher or use another state dir"
        )
    for version in range(found, target):
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise _state_error(path, exc) from None
    return found


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def open_state(state_dir: Path, *, migrate_to: int = SCHEMA_VERSION) -> StateStore:
    """Open (creating if needed) the state DB in ``state_dir``, migrated to the latest schema."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise StateError(f"{state_dir}: cannot create the state dir: {exc.strerror}") from None
    path = state_dir / DB_NAME
    refuse_not_a_file(path)
    try:
        _create_private(path)
        refuse_empty(path)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    except OSError as exc:
        raise StateError(f"{path}: cannot create the state database: {exc.strerror}") from None
    except sqlite3.Error as exc:
        raise _state_error(path, exc) from None
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, path, migrate_to)
    except sqlite3.Error as exc:
        conn.close()
        raise _state_error(path, exc) from None
    except StateError:
        conn.close()
        raise
    return StateStore(conn, path)
