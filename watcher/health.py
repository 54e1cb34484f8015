"""Core health checks that belong to no feature: the data dir and the trigger outbox.

Feature components report their own health (observer alive, last successful
poll, backend reachability); this one covers what the daemon needs regardless:
the data dir exists and is readable, the state DB answers, and how deep the
trigger outbox is (also exported as a metric).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from watcher.daemon import Health
from watcher.errors import StateError
from watcher.metrics import METRICS, Metrics
from watcher.state import StateStore

CHECK_EVERY = 5.0


def outbox_depth(state: StateStore) -> int:
    """Triggers not yet delivered (status 'pending')."""
    row = state.conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()
    return int(row[0])


class CoreChecks:
    name = "core"

    def __init__(self, data_dir: Path, state: StateStore, *, metrics: Metrics | None = None):
        self.data_dir = data_dir
        self.state = state
        self.metrics = metrics or METRICS
        self._health = Health(self.name, False, {"reason": "not checked yet"})

    def start(self) -> None:
        self.tick()

    def tick(self) -> float:
        detail: dict[str, object] = {"data_dir": str(self.data_dir)}
        problems: list[str] = []
        if not self.data_dir.is_dir():
            problems.append("data dir is missing")
        elif not os.access(self.data_dir, os.R_OK | os.X_OK):
            problems.append("data dir is not readable")
        try:
            depth = outbox_depth(self.state)
        except (sqlite3.Error, StateError) as exc:
            problems.append(f"state database: {exc}")
        else:
            detail["outbox_depth"] = depth
            self.metrics.outbox_depth.set(depth)
        if problems:
            detail["problems"] = problems
        self._health = Health(self.name, not problems, detail)
        return CHECK_EVERY

    def health(self) -> Health:
        return self._health

    def stop(self) -> None:
        return None
