"""Core health checks that belong to no feature: the data dir, the state DB, the queue depth.

Feature components report their own health (observer alive, last successful
poll, backend reachability); this one covers what the daemon needs regardless:
the data dir exists and is readable, the state DB answers and takes a write
(read-only file or mount, full disk), and how deep the trigger outbox is (through the
callable app.py passes; also exported as a metric).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from watcher.errors import StateError
from watcher.runtime.component import Health
from watcher.runtime.logging import get_logger
from watcher.runtime.metrics import METRICS, Metrics
from watcher.runtime.once import OncePerCause
from watcher.runtime.state import StateStore

CHECK_EVERY = 5.0
log = get_logger("watcher.runtime.health")


class CoreChecks:
    name = "core"

    def __init__(
        self,
        data_dir: Path,
        state: StateStore,
        *,
        queued: Callable[[], int],
        metrics: Metrics | None = None,
    ):
        self.data_dir = data_dir
        self.state = state
        self.queued = queued  # the outbox depth (trigger.outbox.Outbox.depth)
        self.metrics = metrics or METRICS
        self._health = Health(self.name, False, {"reason": "not checked yet"})
        self._db_id = _file_id(state.path)
        self._db_lost = OncePerCause()

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
            depth = self.queued()
            self.state.check_writable()  # read-only or full: 503, not a silent 200
        except (sqlite3.Error, StateError) as exc:
            problems.append(f"state database: {exc}")
        else:
            detail["outbox_depth"] = depth
            self.metrics.outbox_depth.set(depth)
        # SQLite keeps writing to an unlinked file without complaint: everything from then on
        # would be lost at the next start. Fail the check (→ /healthz 503, no systemd watchdog
        # ping → restart with a fresh DB) and say why; recreating it under us would be worse.
        if self._db_id is not None and _file_id(self.state.path) != self._db_id:
            lost = f"state database {self.state.path} was deleted or replaced while running"
            problems.append(lost + "; restart the watcher")
            if self._db_lost.first():
                log.error("state_db_missing", path=str(self.state.path), hint="restart the watcher")
        if problems:
            detail["problems"] = problems
        self._health = Health(self.name, not problems, detail)
        return CHECK_EVERY

    def health(self) -> Health:
        return self._health

    def stop(self) -> None:
        return None


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino
