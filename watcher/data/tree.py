"""One watched directory: its incremental hasher, its file-system watch, and when to scan.

Events only say "look again" (after the quiet period); a periodic reconcile scan
catches what events missed. The data watcher and the evaluator both scan through it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.lineage import printable
from watcher.data.fswatch import FsWatch
from watcher.data.hashing import IncrementalHasher
from watcher.runtime.logging import get_logger

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

    from watcher.config import WatchConfig
    from watcher.runtime.clock import Clock
    from watcher.runtime.state import StateStore

log = get_logger("watcher.data.tree")


class WatchedTree:
    """A directory's hasher and watch (per the ``[watch]`` settings) and its scan
    schedule: at start, after a settled change batch, every
    ``reconcile_interval``, and whenever a scan asks to be retried."""

    def __init__(
        self,
        root: Path,
        state: StateStore,
        w: WatchConfig,
        clock: Clock,
        observer_factory: Callable[[], BaseObserver] | None = None,
        *,
        progress: bool,
    ) -> None:
        self.root = root
        self.clock = clock
        self.hasher = IncrementalHasher(
            root,
            state,
            patterns=w.ignore,
            follow_symlinks=w.follow_symlinks,
            workers=w.hash_workers,
            progress=progress,
        )
        self.fs = FsWatch(
            root,
            mode=w.mode,
            patterns=w.ignore,
            quiet_period=w.quiet_period,
            max_wait=w.max_wait,
            polling_interval=w.polling_interval,
            clock=clock.monotonic,
            observer_factory=observer_factory,
        )
        self.quiet_period = w.quiet_period
        self.reconcile_interval = w.reconcile_interval
        self.scan_at: float | None = None
        self.reason = "startup"
        self._next_reconcile = 0.0

    def start(self) -> bool:
        """Start watching (False: the directory is missing) and scan at once: the data
        may have changed while the daemon was down."""
        watching = self.fs.start()
        now = self.clock.monotonic()
        self.scan_at = now
        self._next_reconcile = now + self.reconcile_interval
        return watching

    def stop(self) -> None:
        self.fs.stop()

    def request(self, reason: str, at: float) -> None:
        """Scan at monotonic time ``at`` (or sooner, when one is already due sooner)."""
        if self.scan_at is None or at < self.scan_at:
            self.scan_at = at
            self.reason = reason

    def retry_in(self, seconds: float) -> None:
        """Scan again ``seconds`` from now, for the same reason as the scan that asks."""
        self.request(self.reason, self.clock.monotonic() + seconds)

    def due(self) -> str | None:
        """Look at the watch; the reason of a scan that is due now (then no longer due)."""
        mono = self.clock.monotonic()
        self.fs.check()  # a rebuilt watch records a change: events may have been missed
        if mono >= self._next_reconcile:
            self._next_reconcile = mono + self.reconcile_interval
            self.request("reconcile", mono)
        if self.fs.batch_due() == 0.0:
            batch = self.fs.take()
            if batch is not None:
                sample = [printable(p) for p in batch.sample]
                log.debug("change_batch", root=str(self.root), events=batch.events, sample=sample)
            self.request("change", mono)
        if self.scan_at is None or mono < self.scan_at:
            return None
        self.scan_at = None
        return self.reason

    def wait(self) -> float:
        """Seconds until the next reconcile, change batch or requested scan."""
        mono = self.clock.monotonic()
        waits = [self._next_reconcile - mono]
        due = self.fs.batch_due()
        if due is not None:
            waits.append(due)
        if self.scan_at is not None:
            waits.append(self.scan_at - mono)
        return max(0.0, min(waits))
