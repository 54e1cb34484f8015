"""SQLite store: schema, idempotent enqueue, atomic record, retry bookkeeping."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from alerts import SCHEMA, AlertStore, Notification, NotificationKind, ensure_schema, evaluate
from alerts.routing import PlannedDelivery
from alerts.store import from_db_time, to_db_time
from tests.alerts.conftest import T0, accuracy_alert


def _firing(sequence: int = 1) -> PlannedDelivery:
    return PlannedDelivery("log", Notification(accuracy_alert(), NotificationKind.FIRING, sequence))


def test_schema_is_idempotent_on_a_wal_file(tmp_path: Path) -> None:
    """SCHEMA runs twice on a WAL database without error (migrations may re-run it)."""
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    conn.executescript(SCHEMA)
    ensure_schema(conn)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"alert_states", "alert_deliveries"} <= tables
    conn.close()


def test_enqueue_is_idempotent(store: AlertStore) -> None:
    """The same (fingerprint, channel, kind, sequence) is enqueued once, however often recorded."""
    assert store.record((), [_firing()], T0) == 1
    assert store.record((), [_firing()], T0 + timedelta(minutes=1)) == 0
    assert store.record((), [_firing(sequence=2)], T0) == 1
    assert len(store.pending()) == 2


def test_record_is_atomic(store: AlertStore, conn: sqlite3.Connection) -> None:
    """If the enqueue fails, the state change is rolled back too (no lost notification)."""
    states = evaluate("policy", [accuracy_alert()], {}, T0).states
    conn.execute("DROP TABLE alert_deliveries")
    with pytest.raises(sqlite3.OperationalError):
        store.record(states, [_firing()], T0)
    assert store.load_states() == {}


def test_record_nests_in_callers_transaction(store: AlertStore, conn: sqlite3.Connection) -> None:
    """Inside an open transaction the store uses a savepoint and leaves commit to the caller."""
    conn.execute("BEGIN")
    store.record((), [_firing()], T0)
    assert conn.in_transaction
    conn.rollback()
    assert store.pending() == []


def test_failure_bookkeeping_and_health(store: AlertStore) -> None:
    """mark_failed counts attempts, keeps a redacted error and next attempt; delivery clears it."""
    store.record((), [_firing()], T0)
    (delivery,) = store.pending()
    for attempt in range(3):
        store.mark_failed([delivery.id], "HTTP 500", T0 + timedelta(minutes=attempt + 1))
    (failed,) = store.pending()
    assert (failed.attempts, failed.last_error) == (3, "HTTP 500")
    assert failed.next_attempt_at == T0 + timedelta(minutes=3)
    assert store.failing_channels(3) == {"log": 3}
    store.mark_delivered([delivery.id], T0 + timedelta(minutes=4))
    assert store.failing_channels(3) == {}
    (done,) = store.deliveries()
    assert (done.attempts, done.delivered_at, done.last_error) == (
        4,
        T0 + timedelta(minutes=4),
        None,
    )


def test_states_round_trip(store: AlertStore) -> None:
    """States written by record() load back equal."""
    states = evaluate("policy", [accuracy_alert()], {}, T0).states
    store.record(states, [], T0)
    assert store.load_states() == {s.fingerprint: s for s in states}
    assert store.firing_states() == list(states)


def test_prune_forgets_old_resolved_and_delivered(store: AlertStore) -> None:
    """prune drops resolved states and delivered rows older than the cut-offs."""
    first = evaluate("p", [accuracy_alert()], {}, T0)
    store.record(first.states, [_firing()], T0)
    store.mark_delivered([store.pending()[0].id], T0)
    resolved = evaluate("p", [], store.load_states(), T0 + timedelta(hours=1))
    store.record(resolved.states, [], T0 + timedelta(hours=1))
    assert store.prune(T0 + timedelta(days=1), T0 + timedelta(days=1)) == 2
    assert (store.load_states(), store.deliveries()) == ({}, [])


def test_db_times_sort_as_text() -> None:
    """Stored timestamps are fixed-width UTC, so text order is time order, across offsets."""
    from datetime import timezone

    plus2 = T0.astimezone(timezone(timedelta(hours=2)))
    assert to_db_time(plus2) == to_db_time(T0) == "2026-01-01T12:00:00.000000Z"
    assert from_db_time(to_db_time(plus2)) == T0
    assert to_db_time(T0) < to_db_time(T0 + timedelta(microseconds=1))
