"""The data side of the daemon: watch → settle → hash → decide → freeze → enqueue.

Events only say "look again"; the incremental dataset hash decides. A trigger
is due only when the hash differs from the hash of the last *delivered*
trigger, so touching a file, rewriting identical bytes or renaming back never
triggers, and a change made while the daemon was down triggers once at startup.
With ``watch.snapshot_dir`` each triggered dataset is frozen first (watcher/data/snapshots.py)
and every distinct hash runs once, in order; without it, a newer hash supersedes an
undelivered trigger, whose bytes are gone. The outbox rows are delivered and followed
by watcher/trigger/delivery.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipeline.lineage import DatasetPathError, printable
from watcher.data.hashing import ScanResult, record_snapshot
from watcher.data.snapshots import SnapshotKeeper, SnapshotStale
from watcher.data.tree import WatchedTree
from watcher.runtime.clock import Clock, SystemClock
from watcher.runtime.component import Health
from watcher.runtime.faults import fault_point
from watcher.runtime.logging import get_logger
from watcher.runtime.metrics import METRICS
from watcher.runtime.once import OncePerCause
from watcher.trigger.base import run_id_for

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

    from watcher.config import Config
    from watcher.ports import RunHooks
    from watcher.runtime.state import StateStore
    from watcher.trigger.outbox import Outbox

log = get_logger("watcher.data.watcher")

SCAN_RETRY = 5.0  # seconds before a scan that raised (state DB error) is tried again
# Failed deliveries in a row after which the oldest trigger counts as failing (readiness,
# /healthz 503): the alert dispatcher's default too.
DELIVERY_FAILING_AFTER = 3

Verdict = Literal["trigger", "unchanged", "queued", "empty"]


def decide(
    current: str, file_count: int, last_delivered: str | None, pending: Sequence[str]
) -> Verdict:
    """Pure trigger decision from the current dataset hash and the outbox/meta facts."""
    if file_count == 0:
        return "empty"
    if current == last_delivered:
        return "unchanged"
    if current in pending:
        return "queued"
    return "trigger"


@dataclass
class _Status:
    last_scan_at: datetime | None = None
    last_hash: str | None = None
    last_files: int = 0
    last_error: str | None = None
    scans: int = 0
    triggers: int = 0

    def scanned(self, result: ScanResult, at: datetime, reason: str) -> None:
        """A settled scan: its dataset is the current one."""
        m = result.manifest
        self.last_error = None
        self.scans += 1
        self.last_scan_at = at
        self.last_hash, self.last_files = m.dataset_hash, len(m.entries)
        log.info(
            "data_scanned",
            reason=reason,
            data_hash=m.dataset_hash,
            files=len(m.entries),
            bytes=m.total_bytes,
            hashed_files=result.hashed_files,
            cached_files=result.cached_files,
            seconds=round(result.seconds, 3),
        )


class DataWatcher:
    """Daemon component; all work happens in :meth:`tick` on the main loop. Implements
    ``ports.DatasetView`` (what a retrain trains on)."""

    name = "data"

    def __init__(
        self,
        config: Config,
        state: StateStore,
        outbox: Outbox,
        *,
        snapshots: SnapshotKeeper | None = None,
        hooks: Sequence[RunHooks] = (),
        clock: Clock | None = None,
        observer_factory: Callable[[], BaseObserver] | None = None,
        progress: bool = True,
    ) -> None:
        w = config.watch
        self.state = state
        self.outbox = outbox
        self.hooks = list(hooks)
        self.clock: Clock = clock or SystemClock()
        self.root = Path(w.data_dir).absolute()
        self.tree = WatchedTree(
            self.root, state, w, self.clock, observer_factory, progress=progress
        )
        self.hasher, self.fs = self.tree.hasher, self.tree.fs
        self.snapshots = snapshots
        self.quiet_period = w.quiet_period
        self.status = _Status()
        self._first_scan = True
        self._empty = OncePerCause()  # the empty dataset's hash, said once
        self._held = OncePerCause()  # why the last freeze failed
        self._skipped: set[tuple[str, str]] = set()  # (path, why) already reported

    # Component protocol --------------------------------------------------------

    def bind_stop(self, stop: threading.Event) -> None:
        """A scan (the first hash of a big tree) gives way to the daemon's stop."""
        self.hasher.stop = stop

    def start(self) -> None:
        if self.snapshots is not None:
            self.snapshots.remove_litter()
        if not self.tree.start():
            log.warning("data_dir_missing", data_dir=str(self.root), hint="waiting for it")

    def stop(self) -> None:
        self.tree.stop()

    def health(self) -> Health:
        detail: dict[str, object] = {
            "data_dir": str(self.root),
            "watch_mode": self.fs.active_mode,
            "data_hash": self.status.last_hash,
            "files": self.status.last_files,
            "last_scan_at": self.status.last_scan_at,
        }
        delivery, failing = self.outbox.delivery_health(DELIVERY_FAILING_AFTER)
        detail |= delivery
        if self.snapshots is not None:
            detail["snapshot_dir"] = str(self.snapshots.root)
        if self.fs.fallback_reason:
            detail["polling_because"] = self.fs.fallback_reason
        if self.status.last_error:
            detail["error"] = self.status.last_error
        # An outage elsewhere (Airflow down) is not ours to fix by restarting: stay ok
        # (no watchdog restart) but not ready, so /healthz says the trigger is not going out.
        # Data we cannot use (a refused file name, an unreadable file) is not ready either.
        ok = self.fs.watching or not self.root.exists()
        return Health(self.name, ok, detail, ready=not failing and self.status.last_error is None)

    def tick(self) -> float:
        reason = self.tree.due()
        if reason is not None:
            try:
                self._scan(reason)
            except Exception:
                # E.g. disk full while saving the hash cache: keep the change pending and
                # retry, or it would wait for the next reconcile (5 min). The loop logs it.
                self.tree.retry_in(max(self.quiet_period, SCAN_RETRY))
                raise
        return self.tree.wait()

    # Scanning ------------------------------------------------------------------

    def _scan(self, reason: str) -> ScanResult | None:
        if not self.root.is_dir():
            log.warning("data_dir_missing", data_dir=str(self.root), not_triggering=True)
            return None
        try:
            result = self.hasher.scan()
        except DatasetPathError as exc:
            self._error(f"{self.root}/{exc}")
            return None
        except FileNotFoundError:
            # The dir vanished mid-walk; the watch check will notice and rescan.
            self.tree.retry_in(self.quiet_period)
            return None
        except OSError as exc:
            # Retried (once logged): EMFILE, a hung mount or a fixed permission clears
            # without an event, and the reconcile may be an hour away.
            self._error(f"{self.root}: cannot read the data dir: {exc}")
            self.tree.retry_in(max(self.quiet_period, SCAN_RETRY))
            return None
        self._report_skips(result.skipped)
        if not result.settled:
            log.info("files_not_settled", data_dir=str(self.root), files=list(result.unsettled[:5]))
            self.tree.retry_in(self.quiet_period)
            return result
        METRICS.record_hash(
            result.seconds,
            result.hashed_bytes,
            result.manifest.total_bytes,
            result.hashed_files + result.cached_files,
        )
        self.status.scanned(result, self.clock.now(), reason)
        self._on_manifest(result, reason)
        return result

    def _report_skips(self, skipped: Sequence[tuple[str, str]]) -> None:
        """Name each skipped path once while it stays skipped (not on every scan); a loop
        also goes to the history, since it is data the operator may think is trained on."""
        current = set(skipped)
        for rel, why in sorted(current - self._skipped):
            name = printable(rel)  # a skipped link may have any bytes in its name
            log.info("file_skipped", data_dir=str(self.root), path=name, reason=why)
            if why == "symlink loop":
                self.state.record("data.skipped", f"{self.root}/{name}: {why}, skipped")
        self._skipped = current

    def _error(self, message: str) -> None:
        if message != self.status.last_error:
            log.error("data_scan_failed", error=message)
            self.state.record("data.error", message)
        self.status.last_error = message

    # Deciding, freezing and queueing ---------------------------------------------

    def _on_manifest(self, result: ScanResult, reason: str) -> None:
        m = result.manifest
        now = self.clock.now()
        current = m.dataset_hash
        last = self.outbox.last_delivered_hash()
        pending = [r.data_hash for r in self.outbox.pending()]
        verdict = decide(current, len(m.entries), last, pending)
        first, self._first_scan = self._first_scan, False
        if verdict == "empty":
            self._on_empty(current, now)
            return
        self._empty.clear()
        new_snapshot = record_snapshot(self.state, m, now)
        if verdict in ("unchanged", "queued"):
            n = self._drop_after(current, now)
            if n:
                log.info("data_back_to_earlier_hash", data_hash=current, dropped_triggers=n)
            return
        run_id = run_id_for(current)
        existing = self.outbox.get(run_id)
        data_dir: Path | None = None
        if self.snapshots is not None and (existing is None or existing.status == "superseded"):
            data_dir = self._freeze(result)
            if data_dir is None:
                return  # held: _freeze said why and asked for a rescan
        conf: dict[str, Any] = {
            "data_hash": current,
            "data_dir": str(data_dir or self.root),
            "file_count": len(m.entries),
            "bytes": m.total_bytes,
            "reason": "changed_while_down" if first and last is not None else "data_changed",
        }
        if data_dir is not None:
            conf["source_dir"] = str(self.root)
        if existing is None:
            for hook in self.hooks:
                conf |= hook.before_trigger(self.root, current)
        self._enqueue(run_id, conf, now, new_snapshot=new_snapshot)

    def _on_empty(self, current: str, now: datetime) -> None:
        if self._empty.first(current):
            log.info("data_dir_empty_not_triggering", data_dir=str(self.root))
            self.state.record(
                "data.empty", f"{self.root}: no data files (empty or all ignored); no trigger"
            )
        if self.snapshots is None:  # frozen triggers still have their bytes: keep them
            self.outbox.supersede_pending(None, now)

    def _enqueue(
        self, run_id: str, conf: dict[str, Any], now: datetime, *, new_snapshot: bool
    ) -> None:
        current = str(conf["data_hash"])
        if self.outbox.enqueue(
            run_id, current, conf["reason"], conf, now, supersede=self.snapshots is None
        ):
            self.status.triggers += 1
            log.info("trigger_queued", run_id=run_id, new_snapshot=new_snapshot, **conf)
            fault_point("after_outbox_write")
            return
        # This hash was delivered before (A → B → A): the run exists; don't run it twice.
        row = self.outbox.get(run_id)
        log.info("trigger_exists", run_id=run_id, status=row.status if row else None)
        if row is not None and row.status == "delivered":
            self.outbox.back_to_delivered(current)
            self._drop_after(current, now)

    def _drop_after(self, current: str, now: datetime) -> int:
        """The data is at a hash already delivered or queued: drop what no longer applies."""
        if self.snapshots is None:
            return self.outbox.supersede_pending(current, now)
        return self.outbox.supersede_after(current, now)

    def _freeze(self, result: ScanResult) -> Path | None:
        """Snapshot the dataset; None when snapshots are off or the trigger must wait."""
        if self.snapshots is None:
            return None
        try:
            path = self.snapshots.freeze(self.root, result.manifest)
        except SnapshotStale as exc:
            log.info("data_changed_while_freezing", detail=str(exc))
            self.hasher.forget(exc.rel)  # a cached digest may be what is stale
            self.tree.retry_in(self.quiet_period)
            return None
        except OSError as exc:
            message = f"snapshot into {self.snapshots.root} failed, trigger held: {exc}"
            if self._held.first(message):  # once per cause, not every SCAN_RETRY
                self._error(message)
            self.status.last_error = message
            self.tree.retry_in(SCAN_RETRY)
            return None
        self._held.clear()
        return path

    # ports.DatasetView -----------------------------------------------------------------

    def retrain_conf(self) -> dict[str, Any] | None:
        data_hash = self.status.last_hash or self.outbox.last_delivered_hash()
        if data_hash is None:
            return None
        conf: dict[str, Any] = {
            "data_hash": data_hash,
            "data_dir": str(self.root),
            "file_count": self.status.last_files,
        }
        frozen = self.snapshots.frozen(data_hash) if self.snapshots is not None else None
        if frozen is not None:
            conf |= {"data_dir": str(frozen), "source_dir": str(self.root)}
        return conf
