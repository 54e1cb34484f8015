"""What `watcher status` reports, read from the state DB only (no MLflow, no network).

Works while the daemon runs (the DB is opened read-only) and on partial data:
every table or column that a feature adds later is optional, and what is not
known is ``None``. The JSON form is documented in docs/status.schema.json.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcher.runtime.lock import pid_alive
from watcher.runtime.state import (
    DB_NAME,
    HEARTBEAT_EVERY,
    META_DAG,
    META_HEARTBEAT,
    META_LAST_DELIVERED,
    META_POLICY,
    Event,
    StateStore,
    iso,
    read_error,
    refuse_empty,
    refuse_not_a_file,
)

if TYPE_CHECKING:
    from watcher.config import Config

SCHEMA_VERSION = 1
# The daemon writes its heartbeat every HEARTBEAT_EVERY seconds; several missed
# beats mean it is gone (or stuck, which systemd's watchdog handles).
STALE_AFTER = 6 * HEARTBEAT_EVERY
# Where the features leave what status shows (all optional):
LIVE_EVENT_PREFIX = "monitor.accuracy_"  # payload {"accuracy", "samples"} on transitions


def open_readonly(state_dir: Path) -> sqlite3.Connection | None:
    """The state DB opened read-only, or None if there is none yet."""
    path = state_dir / DB_NAME
    refuse_not_a_file(path)
    if not path.exists():
        return None
    try:
        refuse_empty(path)
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise read_error(path, exc) from None
    return conn


def read_events(
    state_dir: Path, *, since: datetime | None, model: str | None, limit: int
) -> list[Event] | None:
    """`watcher history`: the newest events, read-only (None: no state DB yet). Like
    status, it creates nothing and works while the daemon runs."""
    conn = open_readonly(state_dir)
    if conn is None:
        return None
    path = state_dir / DB_NAME
    try:
        if "events" not in _tables(conn):
            return []
        return StateStore(conn, path).events(since=since, model=model, limit=limit)
    except sqlite3.Error as exc:
        raise read_error(path, exc) from None
    finally:
        conn.close()


def status_of(config: Config) -> dict[str, Any]:
    """The status document of ``config``'s state dir, read-only and redacted: errors stored
    by an older release (or echoed by a server) may hold a secret."""
    from alerts.redaction import redact_data

    conn = open_readonly(config.state.dir)
    try:
        doc = collect(
            conn,
            data_dir=config.watch.data_dir,
            state_dir=config.state.dir,
            now=datetime.now(UTC),
        )
    finally:
        if conn is not None:
            conn.close()
    redacted: dict[str, Any] = redact_data(doc)
    return redacted


def collect(
    conn: sqlite3.Connection | None, *, data_dir: Path, state_dir: Path, now: datetime
) -> dict[str, Any]:
    """The status document (see docs/status.schema.json)."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": iso(now),
        "data_dir": str(data_dir.resolve()),
        "state_dir": str(state_dir.resolve()),
        "dataset": _dataset(None, {}),
        "last_trigger": None,
        "dag": None,
        "models": [],
        "outbox": {"depth": 0, "by_status": {}},
        "daemon": _daemon(None, now),
    }
    if conn is None:
        return doc
    try:
        tables = _tables(conn)
        doc["dataset"] = _dataset(conn, tables)
        doc["last_trigger"] = _last_trigger(conn, tables)
        doc["outbox"] = _outbox(conn, tables)
        doc["dataset"]["last_delivered_hash"] = _meta(conn, tables, META_LAST_DELIVERED)
        doc["dag"] = _dag(_meta(conn, tables, META_DAG))
        doc["models"] = _models(conn, tables, _policy(_meta(conn, tables, META_POLICY)))
        doc["daemon"] = _daemon(_meta(conn, tables, META_HEARTBEAT), now)
    except sqlite3.Error as exc:
        raise read_error(state_dir / DB_NAME, exc) from None
    return doc


def _tables(conn: sqlite3.Connection) -> dict[str, set[str]]:
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {n: {r[1] for r in conn.execute(f"PRAGMA table_info({n!r})")} for n in names}


def _meta(conn: sqlite3.Connection, tables: dict[str, set[str]], key: str) -> str | None:
    if "meta" not in tables:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _dataset(conn: sqlite3.Connection | None, tables: dict[str, set[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "current_hash": None,
        "last_delivered_hash": None,
        "file_count": None,
        "bytes": None,
        "seen_at": None,
    }
    if conn is not None and "snapshots" in tables:
        row = conn.execute(
            "SELECT data_hash, file_count, bytes, last_seen FROM snapshots "
            "ORDER BY last_seen DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            out.update(current_hash=row[0], file_count=row[1], bytes=row[2], seen_at=row[3])
    return out


_TRIGGER_COLS = (
    "run_id",
    "data_hash",
    "reason",
    "status",
    "run_state",
    "attempts",
    "last_error",
    "created_at",
    "delivered_at",
    "finished_at",
)


def _newest(
    conn: sqlite3.Connection,
    tables: dict[str, set[str]],
    table: str,
    wanted: tuple[str, ...],
    where: str = "",
    args: tuple[object, ...] = (),
) -> dict[str, Any] | None:
    """The newest row of ``table`` as {column: value} over ``wanted`` (None for a column an
    older schema lacks); None without the table or a row."""
    cols = tables.get(table)
    if not cols:
        return None
    present = [c for c in wanted if c in cols]
    # Table and column names come from fixed tuples here, filtered by what the table has.
    row = conn.execute(
        f"SELECT {', '.join(present)} FROM {table} {where} ORDER BY id DESC LIMIT 1",  # noqa: S608
        args,
    ).fetchone()
    if row is None:
        return None
    found = dict(zip(present, row, strict=True))
    return {c: found.get(c) for c in wanted}


def _last_trigger(conn: sqlite3.Connection, tables: dict[str, set[str]]) -> dict[str, Any] | None:
    return _newest(conn, tables, "outbox", _TRIGGER_COLS)


def _outbox(conn: sqlite3.Connection, tables: dict[str, set[str]]) -> dict[str, Any]:
    if "outbox" not in tables:
        return {"depth": 0, "by_status": {}}
    by_status = {
        str(s): int(n)
        for s, n in conn.execute("SELECT status, count(*) FROM outbox GROUP BY status ORDER BY 1")
    }
    return {"depth": by_status.get("pending", 0), "by_status": by_status}


def _dag(raw: str | None) -> dict[str, Any] | None:
    """The Airflow DAG as the daemon last saw it (paused or not), None if never checked."""
    with contextlib.suppress(ValueError, TypeError):
        data = json.loads(raw or "null")
        if isinstance(data, dict) and isinstance(data.get("paused"), bool):
            return {k: data.get(k) for k in ("dag_id", "paused", "since", "unpause")}
    return None


def _policy(raw: str | None) -> dict[str, str]:
    """Per model, the monitor's live-accuracy policy state (ok, pending, firing, …)."""
    out: dict[str, str] = {}
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        for model, state in json.loads(raw or "{}").items():
            if isinstance(state, dict) and isinstance(state.get("status"), str):
                out[str(model)] = state["status"]
    return out


def _models(
    conn: sqlite3.Connection, tables: dict[str, set[str]], policy: dict[str, str]
) -> list[dict[str, Any]]:
    registry: dict[str, dict[str, Any]] = {}
    if "registry_models" in tables:
        # SELECT *: columns that later features add (live_accuracy, alert_state…) come along.
        cur = conn.execute("SELECT * FROM registry_models ORDER BY model")
        cols = [d[0] for d in cur.description]
        for row in cur:
            rec = dict(zip(cols, row, strict=True))
            registry[str(rec["model"])] = rec
    names = set(registry) | set(policy)
    if "rollback_journal" in tables:
        names |= {r[0] for r in conn.execute("SELECT DISTINCT model FROM rollback_journal")}
    if "events" in tables:
        names |= {
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT model FROM events WHERE model IS NOT NULL "
                "AND payload LIKE '%accuracy%'"
            )
        }
    alerts = {**_alert_states(conn, tables), **policy}
    return [_model(conn, tables, name, registry.get(name, {}), alerts) for name in sorted(names)]


def _model(
    conn: sqlite3.Connection,
    tables: dict[str, set[str]],
    name: str,
    reg: dict[str, Any],
    alerts: dict[str, str],
) -> dict[str, Any]:
    version = reg.get("production_version")
    version = None if version is None else str(version)
    training = _number(reg.get("training_accuracy"))
    live = _number(reg.get("live_accuracy"))
    samples = reg.get("live_samples")
    if "events" in tables:
        if training is None:
            training, _ = _latest_accuracy(conn, name, version, live=False)
        if live is None:
            live, found = _latest_accuracy(conn, name, version, live=True)
            samples = samples if samples is not None else found
    state = reg.get("alert_state") or alerts.get(name)
    # The metric the monitor watches for this model (accuracy unless configured otherwise;
    # rows from before it was recorded held accuracy only).
    metric = reg.get("live_metric") or ("accuracy" if live is not None else None)
    value = _number(reg.get("live_value")) if reg.get("live_metric") else live
    return {
        "name": name,
        "production_version": version,
        "observed_at": reg.get("observed_at"),
        "training_accuracy": training,
        "live_accuracy": live,
        "live_metric": None if metric is None else str(metric),
        "live_value": value,
        "live_samples": None if samples is None else int(samples),
        "alert_state": None if state is None else str(state),
        "last_rollback": _last_rollback(conn, tables, name),
    }


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)
    return None


def _latest_accuracy(
    conn: sqlite3.Connection, model: str, version: str | None, *, live: bool
) -> tuple[float | None, float | None]:
    """The newest recorded (accuracy, samples) for this model (and version) from the history.

    Live: ``live_accuracy``/``live_samples`` in any payload, or the monitor's
    ``monitor.accuracy_*`` events. Training: ``training_accuracy`` in any payload.
    """
    sql = "SELECT kind, payload FROM events WHERE model = ?"
    args: list[Any] = [model]
    if version is not None:
        sql += " AND (version = ? OR version IS NULL)"
        args.append(version)
    sql += " ORDER BY id DESC LIMIT 500"
    for kind, payload in conn.execute(sql, args):
        with contextlib.suppress(ValueError, TypeError):
            data = json.loads(payload)
            if not isinstance(data, dict):
                continue
            if not live:
                value = _number(data.get("training_accuracy"))
                if value is not None:
                    return value, None
            elif _number(data.get("live_accuracy")) is not None:
                return _number(data["live_accuracy"]), _number(data.get("live_samples"))
            elif str(kind).startswith(LIVE_EVENT_PREFIX) and data.get("accuracy") is not None:
                return _number(data["accuracy"]), _number(data.get("samples"))
    return None, None


def _alert_states(conn: sqlite3.Connection, tables: dict[str, set[str]]) -> dict[str, str]:
    """Per model: 'firing' if any of its alerts fires, else 'ok' (from alerts' own table)."""
    if "alert_states" not in tables:
        return {}
    out: dict[str, str] = {}
    for status, alert_json in conn.execute("SELECT status, alert_json FROM alert_states"):
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            model = json.loads(alert_json).get("labels", {}).get("model")
            if isinstance(model, str) and model:
                if status == "firing" or out.get(model) == "firing":
                    out[model] = "firing"
                else:
                    out[model] = "ok"
    return out


_ROLLBACK_COLS = ("from_version", "to_version", "step", "reason", "actor", "automatic", "undo")


def _last_rollback(
    conn: sqlite3.Connection, tables: dict[str, set[str]], model: str
) -> dict[str, Any] | None:
    wanted = (*_ROLLBACK_COLS, "started_at", "updated_at")
    row = _newest(conn, tables, "rollback_journal", wanted, "WHERE model = ?", (model,))
    if row is None:
        return None
    out = {c: row[c] for c in _ROLLBACK_COLS} | {"at": row["started_at"]}
    out["updated_at"] = row["updated_at"]
    for flag in ("automatic", "undo"):
        out[flag] = None if out[flag] is None else bool(out[flag])
    return out


def _daemon(heartbeat: str | None, now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {
        "running": False,
        "healthy": None,
        "pid": None,
        "heartbeat_at": None,
        "heartbeat_age_seconds": None,
        "checks": {},
    }
    if heartbeat is None:
        return out
    try:
        beat = json.loads(heartbeat)
        at = datetime.fromisoformat(beat["at"])
    except (ValueError, KeyError, TypeError):
        return out
    age = max(0.0, (now - at).total_seconds())
    pid = beat.get("pid")
    checks = beat.get("checks") if isinstance(beat.get("checks"), dict) else {}
    running = (
        isinstance(pid, int) and not beat.get("stopped") and age <= STALE_AFTER and pid_alive(pid)
    )
    out.update(
        heartbeat_at=beat["at"],
        heartbeat_age_seconds=round(age, 3),
        pid=pid if isinstance(pid, int) else None,
        running=running,
        checks=checks,
    )
    if running:
        out["healthy"] = all(bool(c.get("ok")) for c in checks.values() if isinstance(c, dict))
    return out
