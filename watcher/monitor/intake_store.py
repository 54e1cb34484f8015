"""The ``intake_observations`` table (state migration 7): observations posted to the daemon's
intake, every SQL on it, and the monitor's :class:`IntakeObservations` source reading it.

The table stays bounded: the poll keeps the newest :data:`KEEP_PER_VERSION` rows of each
watched Production version (the largest window a config may ask for) and drops rows of other
versions after :data:`RETENTION`; the intake refuses new rows beyond :data:`MAX_ROWS`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from watcher.config import MAX_WINDOW
from watcher.monitor.policy import Observation
from watcher.runtime.clock import Clock, SystemClock
from watcher.runtime.logging import get_logger
from watcher.runtime.state import StateStore, iso, open_state

if TYPE_CHECKING:
    from watcher.monitor.policy import PolicyConfig

MAX_ROWS = 500_000
KEEP_PER_VERSION = MAX_WINDOW
RETENTION = timedelta(days=30)
PRUNE_EVERY = 60.0  # seconds between prunes on the poll thread
log = get_logger("watcher.monitor.intake_store")


@dataclass(frozen=True, slots=True)
class Stored:
    id: int
    model: str
    version: str
    metric: str
    value: float
    samples: int
    at: datetime
    received_at: datetime


def insert(tx: sqlite3.Connection, row: Stored) -> int | None:
    """Add one observation (in the caller's transaction); its id, or None when the table
    holds :data:`MAX_ROWS` already (cheap check first: ids only grow)."""
    span = tx.execute("SELECT max(id) - min(id) + 1 FROM intake_observations").fetchone()[0]
    if span is not None and span >= MAX_ROWS:
        count = tx.execute("SELECT count(*) FROM intake_observations").fetchone()[0]
        if count >= MAX_ROWS:
            return None
    cur = tx.execute(
        "INSERT INTO intake_observations (model, version, metric, value, samples, at,"
        " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            row.model,
            row.version,
            row.metric,
            row.value,
            row.samples,
            iso(row.at),
            iso(row.received_at),
        ),
    )
    return int(cur.lastrowid or 0)


def newest(
    conn: sqlite3.Connection, model: str, version: str, metric: str, limit: int
) -> list[Observation]:
    """The newest ``limit`` observations of ``metric`` for one version, oldest first."""
    rows = conn.execute(
        "SELECT at, value, samples FROM intake_observations"
        " WHERE model = ? AND version = ? AND metric = ? ORDER BY at DESC, id DESC LIMIT ?",
        (model, version, metric, limit),
    ).fetchall()
    return [Observation(datetime.fromisoformat(at), v, s, metric) for at, v, s in rows[::-1]]


def prune(state: StateStore, wanted: Iterable[tuple[str, str]], now: datetime) -> int:
    """Drop what no evaluation can read: beyond the newest KEEP_PER_VERSION of each wanted
    version (per metric), and rows of other versions received before RETENTION."""
    keys = set(wanted)
    deleted = 0
    with state.transaction() as tx:
        for model, version in sorted(keys):
            metrics = tx.execute(
                "SELECT DISTINCT metric FROM intake_observations WHERE model = ? AND version = ?",
                (model, version),
            ).fetchall()
            for (metric,) in metrics:
                deleted += _cut(tx, model, version, metric)
        old = tx.execute(
            "SELECT DISTINCT model, version FROM intake_observations WHERE received_at < ?",
            (iso(now - RETENTION),),
        ).fetchall()
        for model, version in old:
            if (model, version) not in keys:
                deleted += tx.execute(
                    "DELETE FROM intake_observations WHERE model = ? AND version = ?"
                    " AND received_at < ?",
                    (model, version, iso(now - RETENTION)),
                ).rowcount
    return deleted


def _cut(tx: sqlite3.Connection, model: str, version: str, metric: str) -> int:
    """Delete one series' rows older than its newest KEEP_PER_VERSION (by ``at``, then id)."""
    cut = tx.execute(
        "SELECT at, id FROM intake_observations WHERE model = ? AND version = ? AND metric = ?"
        " ORDER BY at DESC, id DESC LIMIT 1 OFFSET ?",
        (model, version, metric, KEEP_PER_VERSION),
    ).fetchone()
    if cut is None:
        return 0
    return int(
        tx.execute(
            "DELETE FROM intake_observations WHERE model = ? AND version = ? AND metric = ?"
            " AND (at < ? OR (at = ? AND id <= ?))",
            (model, version, metric, cut[0], cut[0], cut[1]),
        ).rowcount
    )


class IntakeObservations:
    """Implements :class:`watcher.ports.ObservationSource` over the intake's table: per
    wanted version, the newest window of its model's watched metric (a bounded read).
    Used on the monitor's poll thread only: it opens its own state connection there."""

    def __init__(
        self,
        state_dir: Path,
        policy_for: Callable[[str], PolicyConfig],
        clock: Clock | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.policy_for = policy_for
        self.clock = clock or SystemClock()
        self._state: StateStore | None = None
        self._pruned_at: float | None = None

    def observations(
        self, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Observation]]:
        keys = list(wanted)
        if self._state is None:
            self._state = open_state(self.state_dir)
        out: dict[tuple[str, str], list[Observation]] = {}
        for model, version in keys:
            policy = self.policy_for(model)
            out[(model, version)] = newest(
                self._state.conn, model, version, policy.metric, policy.window
            )
        mono = self.clock.monotonic()
        if self._pruned_at is None or mono - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = mono
            if deleted := prune(self._state, keys, self.clock.now()):
                log.info("intake_pruned", rows=deleted)
        return out

    def close(self) -> None:
        if self._state is not None:
            self._state.close()
            self._state = None
