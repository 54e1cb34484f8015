"""The alert tables' schema, alone: the daemon's state DB applies it as a migration, and
`watcher status`/`history` open that DB without importing the alert store."""

from __future__ import annotations

from typing import Final

# The one definition of the alert tables: the daemon's state DB applies it as migration 3
# (watcher/runtime/state.py), so it stays as released; a change to a table is a new
# migration there, not an edit here.
SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS alert_states (
    fingerprint      TEXT PRIMARY KEY,
    source           TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    alert_json       TEXT NOT NULL,
    sequence         INTEGER NOT NULL,
    last_notified_at TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_states_by_status ON alert_states (status, source);
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint       TEXT NOT NULL,
    channel           TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('firing', 'repeat', 'resolved')),
    sequence          INTEGER NOT NULL,
    notification_json TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT NOT NULL,
    last_error        TEXT,
    delivered_at      TEXT,
    UNIQUE (fingerprint, channel, kind, sequence)
);
CREATE INDEX IF NOT EXISTS alert_deliveries_pending
    ON alert_deliveries (delivered_at, channel, id);
"""
