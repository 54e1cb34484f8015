"""SQLite persistence: alert states and the delivery outbox.

Deliveries are written before anything is sent; the unique key
(fingerprint, channel, kind, sequence) makes enqueueing idempotent, so a crash
between "decide" and "record" can never produce a second firing notification.
Timestamps are stored as fixed-width UTC ISO strings, so they sort as text.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from alerts.errors import AlertsError
from alerts.lifecycle import AlertState
from alerts.model import Alert, AlertStatus, Notification
from alerts.redaction import redact
from alerts.schema import SCHEMA

if TYPE_CHECKING:
    from alerts.routing import PlannedDelivery


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables if missing (standalone use; the daemon runs SCHEMA as migration 3)."""
    conn.executescript(SCHEMA)


def to_db_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise AlertsError(f"naive datetime {value!r} cannot be stored")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def from_db_time(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


@dataclass(frozen=True)
class Delivery:
    """One notification for one channel, as recorded in the outbox."""

    id: int
    channel: str
    notification: Notification
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """Atomic block that also nests inside a caller's open transaction."""
    if conn.in_transaction:
        conn.execute("SAVEPOINT alerts_store")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO alerts_store")
            conn.execute("RELEASE alerts_store")
            raise
        conn.execute("RELEASE alerts_store")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


class AlertStore:
    """Alert states and deliveries in the daemon's SQLite state DB (one thread)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    # -- states -------------------------------------------------------------

    def load_states(self) -> dict[str, AlertState]:
        rows = self._conn.execute(
            "SELECT fingerprint, source, status, alert_json, sequence, last_notified_at"
            " FROM alert_states"
        ).fetchall()
        return {row[0]: _state_from_row(row) for row in rows}

    def firing_states(self) -> list[AlertState]:
        rows = self._conn.execute(
            "SELECT fingerprint, source, status, alert_json, sequence, last_notified_at"
            " FROM alert_states WHERE status = 'firing' ORDER BY fingerprint"
        ).fetchall()
        return [_state_from_row(row) for row in rows]

    def record(
        self, states: Iterable[AlertState], deliveries: Iterable[PlannedDelivery], now: datetime
    ) -> int:
        """Store changed states and enqueue deliveries atomically; return how many were new."""
        stamp = to_db_time(now)
        with _transaction(self._conn):
            self._conn.executemany(
                "INSERT INTO alert_states (fingerprint, source, status, alert_json, sequence,"
                " last_notified_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (fingerprint) DO UPDATE SET source = excluded.source,"
                " status = excluded.status, alert_json = excluded.alert_json,"
                " sequence = excluded.sequence, last_notified_at = excluded.last_notified_at,"
                " updated_at = excluded.updated_at",
                [
                    (
                        s.fingerprint,
                        s.source,
                        s.status.value,
                        json.dumps(s.alert.to_dict(), sort_keys=True),
                        s.sequence,
                        to_db_time(s.last_notified_at),
                        stamp,
                    )
                    for s in states
                ],
            )
            before = self._conn.total_changes
            self._conn.executemany(
                "INSERT OR IGNORE INTO alert_deliveries (fingerprint, channel, kind, sequence,"
                " notification_json, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        d.notification.alert.fingerprint,
                        d.channel,
                        d.notification.kind.value,
                        d.notification.sequence,
                        json.dumps(d.notification.to_dict(), sort_keys=True),
                        stamp,
                        stamp,
                    )
                    for d in deliveries
                ],
            )
            return self._conn.total_changes - before

    def prune(self, resolved_before: datetime, delivered_before: datetime) -> int:
        """Forget resolved states and delivered deliveries older than the given times."""
        with _transaction(self._conn):
            before = self._conn.total_changes
            self._conn.execute(
                "DELETE FROM alert_states WHERE status = 'resolved' AND updated_at < ?",
                (to_db_time(resolved_before),),
            )
            self._conn.execute(
                "DELETE FROM alert_deliveries WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                (to_db_time(delivered_before),),
            )
            return self._conn.total_changes - before

    # -- deliveries ---------------------------------------------------------

    def pending(self) -> list[Delivery]:
        """Undelivered deliveries, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM alert_deliveries"  # noqa: S608  constant columns
            " WHERE delivered_at IS NULL ORDER BY id"
        ).fetchall()
        return [_delivery_from_row(row) for row in rows]

    def deliveries(self, channel: str | None = None) -> list[Delivery]:
        """All recorded deliveries (optionally for one channel), oldest first."""
        sql = f"SELECT {_DELIVERY_COLUMNS} FROM alert_deliveries"  # noqa: S608
        rows = (
            self._conn.execute(sql + " WHERE channel = ? ORDER BY id", (channel,))
            if channel is not None
            else self._conn.execute(sql + " ORDER BY id")
        ).fetchall()
        return [_delivery_from_row(row) for row in rows]

    def mark_delivered(self, ids: Sequence[int], now: datetime) -> None:
        with _transaction(self._conn):
            self._conn.executemany(
                "UPDATE alert_deliveries SET delivered_at = ?, attempts = attempts + 1,"
                " last_error = NULL WHERE id = ?",
                [(to_db_time(now), i) for i in ids],
            )

    def mark_failed(self, ids: Sequence[int], error: str, next_attempt_at: datetime) -> None:
        with _transaction(self._conn):
            self._conn.executemany(
                "UPDATE alert_deliveries SET attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ? WHERE id = ?",
                [(redact(error)[:1000], to_db_time(next_attempt_at), i) for i in ids],
            )

    def failing_channels(self, threshold: int) -> dict[str, int]:
        """Channels whose oldest undelivered delivery failed at least ``threshold`` times."""
        rows = self._conn.execute(
            "SELECT channel, MAX(attempts) FROM alert_deliveries"
            " WHERE delivered_at IS NULL GROUP BY channel HAVING MAX(attempts) >= ?",
            (threshold,),
        ).fetchall()
        return {str(channel): int(attempts) for channel, attempts in rows}


_DELIVERY_COLUMNS: Final = (
    "id, channel, notification_json, created_at, attempts, next_attempt_at, last_error,"
    " delivered_at"
)


def _state_from_row(row: tuple[str, str, str, str, int, str]) -> AlertState:
    fingerprint, source, status, alert_json, sequence, last_notified = row
    return AlertState(
        fingerprint=fingerprint,
        source=source,
        alert=Alert.from_dict(json.loads(alert_json)),
        status=AlertStatus(status),
        sequence=int(sequence),
        last_notified_at=from_db_time(last_notified),
    )


def _delivery_from_row(
    row: tuple[int, str, str, str, int, str, str | None, str | None],
) -> Delivery:
    ident, channel, note_json, created, attempts, next_at, last_error, delivered = row
    return Delivery(
        id=int(ident),
        channel=channel,
        notification=Notification.from_dict(json.loads(note_json)),
        created_at=from_db_time(created),
        attempts=int(attempts),
        next_attempt_at=from_db_time(next_at),
        last_error=last_error,
        delivered_at=None if delivered is None else from_db_time(delivered),
    )
