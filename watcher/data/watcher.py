"""The data side of the daemon: watch → settle → hash → decide → outbox → deliver → follow.

Events only say "look again"; the incremental dataset hash decides. A trigger
is due only when the hash differs from the hash of the last *delivered*
trigger, so touching a file, rewriting identical bytes or renaming back never
triggers, and a change made while the daemon was down triggers once at startup.
With ``watch.snapshot_dir`` each triggered dataset is frozen first (watcher/data/snapshots.py)
and every distinct hash runs once, in order; without it, a newer hash supersedes an
undelivered trigger, whose bytes are gone.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pipeline.lineage import DatasetPathError, printable
from watcher.runtime.clock import Clock, SystemClock
from watcher.runtime.component import Health
from watcher.errors import TriggerError, WatcherError
from watcher.data.fswatch import FsWatch
from watcher.data.hashing import IncrementalHasher, ScanResult, record_snapshot
from watcher.runtime.logging import get_logger
from watcher.runtime.metrics import METRICS
from watcher.runtime.faults import fault_point
from watcher.trigger.outbox import Outbox, OutboxRow
from watcher.data.snapshots import SnapshotStale, SnapshotStore
from watcher.runtime.state import META_DAG, META_LAST_DELIVERED, iso
from watcher.backends.airflow import TriggerUnavailable, run_id_for
from watcher.trigger.base import TERMINAL_STATES, Trigger, build_trigger, pipeline_settings

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

    from watcher.config import Config, WatchConfig
    from watcher.drift.watch import DriftWatch
    from watcher.runtime.state import StateStore

log = get_logger("watcher.data.watcher")

FOLLOW_INTERVAL = 10.0
SCAN_RETRY = 5.0  # seconds before a scan that raised (state DB error) is tried again
SERIAL_RECHECK = 1.0  # seconds between checks whether a serial backend's run has ended
# Failed deliveries in a row after which the oldest trigger counts as failing (readiness,
# /healthz 503): the alert dispatcher's default too.
DELIVERY_FAILING_AFTER = 3
PAUSED_RECHECK = 60.0  # while the DAG is paused, how often to look whether it was unpaused

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


def watch_tree(
    root: Path,
    state: StateStore,
    w: WatchConfig,
    clock: Clock,
    observer_factory: Callable[[], BaseObserver] | None = None,
    *,
    progress: bool,
) -> tuple[IncrementalHasher, FsWatch]:
    """The hasher and the watcher of one directory, both per the ``[watch]`` settings."""
    hasher = IncrementalHasher(
        root,
        state,
        patterns=w.ignore,
        follow_symlinks=w.follow_symlinks,
        workers=w.hash_workers,
        progress=progress,
    )
    fs = FsWatch(
        root,
        mode=w.mode,
        patterns=w.ignore,
        quiet_period=w.quiet_period,
        max_wait=w.max_wait,
        polling_interval=w.polling_interval,
        clock=clock.monotonic,
        observer_factory=observer_factory,
    )
    return hasher, fs


class DataWatcher:
    """Daemon component; all work happens in :meth:`tick` on the main loop."""

    name = "data"

    def __init__(
        self,
        config: Config,
        state: StateStore,
        *,
        trigger: Trigger | None = None,
        clock: Clock | None = None,
        follow_interval: float = FOLLOW_INTERVAL,
        observer_factory: Callable[[], BaseObserver] | None = None,
        progress: bool = True,
        drift: DriftWatch | None = None,
    ) -> None:
        w, t = config.watch, config.trigger
        self.config = config
        self.state = state
        self.clock: Clock = clock or SystemClock()
        self.root = Path(w.data_dir).absolute()
        self.hasher, self.fs = watch_tree(
            self.root, state, w, self.clock, observer_factory, progress=progress
        )
        self.outbox = Outbox(state, retry_initial=t.retry_initial, retry_max=t.retry_max)
        self.trigger = trigger
        self.settings = pipeline_settings(config)  # sent with every run (see _deliver_one)
        self.drift = drift
        self.snapshots = (
            SnapshotStore(w.snapshot_dir, w.snapshot_keep) if w.snapshot_dir is not None else None
        )
        self.backend = t.backend
        self.run_timeout = t.run_timeout
        self.reconcile_interval = w.reconcile_interval
        self.quiet_period = w.quiet_period
        self.follow_interval = follow_interval
        self.status = _Status()
        self._scan_at: float | None = None
        self._scan_reason = "startup"
        self._next_reconcile = 0.0
        self._next_follow = 0.0
        self._first_scan = True
        self._said_empty: str | None = None
        self._held: str | None = None  # why the last freeze failed (logged once per cause)
        self._skipped: set[tuple[str, str]] = set()  # (path, why) already reported
        self._paused: bool | None = None  # the DAG's state as last seen (Airflow only)
        self._next_paused_check = 0.0

    # Component protocol --------------------------------------------------------

    def bind_stop(self, stop: threading.Event) -> None:
        """A scan (the first hash of a big tree) gives way to the daemon's stop."""
        self.hasher.stop = stop

    def start(self) -> None:
        if self.trigger is None:
            self.trigger = build_trigger(self.config)
        if self.snapshots is not None:
            self.snapshots.remove_litter()
        if not self.fs.start():
            log.warning("data_dir_missing", data_dir=str(self.root), hint="waiting for it")
        now = self.clock.monotonic()
        self._scan_at = now  # startup reconcile: data may have changed while we were down
        self._next_reconcile = now + self.reconcile_interval
        self._restore_gauges()
        self._check_paused()

    def _restore_gauges(self) -> None:
        """After a restart /metrics shows the last trigger from the first scrape."""
        delivered = self.outbox.last_delivered_at()
        if delivered is not None:
            METRICS.last_trigger.set(delivered.timestamp())

    def stop(self) -> None:
        self.fs.stop()
        if self.trigger is not None:
            self.trigger.close()

    def health(self) -> Health:
        pending = self.outbox.pending()
        detail: dict[str, object] = {
            "data_dir": str(self.root),
            "watch_mode": self.fs.active_mode,
            "data_hash": self.status.last_hash,
            "files": self.status.last_files,
            "last_scan_at": self.status.last_scan_at,
            "pending_triggers": len(pending),
            "last_delivered_hash": self.outbox.last_delivered_hash(),
        }
        if self.snapshots is not None:
            detail["snapshot_dir"] = str(self.snapshots.root)
        if self.fs.fallback_reason:
            detail["polling_because"] = self.fs.fallback_reason
        if self.status.last_error:
            detail["error"] = self.status.last_error
        failing = bool(pending) and pending[0].attempts >= DELIVERY_FAILING_AFTER
        if pending and pending[0].last_error:
            detail["delivery_error"] = pending[0].last_error
            detail["delivery_attempts"] = pending[0].attempts
        # An outage elsewhere (Airflow down) is not ours to fix by restarting: stay ok
        # (no watchdog restart) but not ready, so /healthz says the trigger is not going out.
        # Data we cannot use (a refused file name, an unreadable file) is not ready either.
        ok = self.fs.watching or not self.root.exists()
        return Health(self.name, ok, detail, ready=not failing and self.status.last_error is None)

    def tick(self) -> float:
        mono = self.clock.monotonic()
        self.fs.check()  # a rebuilt watch records a change: events may have been missed
        if mono >= self._next_reconcile:
            self._next_reconcile = mono + self.reconcile_interval
            self._request_scan("reconcile", mono)
        due = self.fs.batch_due()
        if due == 0.0:
            batch = self.fs.take()
            if batch is not None:
                sample = [printable(p) for p in batch.sample]
                log.debug("change_batch", events=batch.events, sample=sample)
            self._request_scan("change", mono)
        if self._scan_at is not None and mono >= self._scan_at:
            self._scan_at = None
            try:
                self._scan()
            except Exception:
                # E.g. disk full while saving the hash cache: keep the change pending and
                # retry, or it would wait for the next reconcile (5 min). The loop logs it.
                self._request_scan(self._scan_reason, mono + max(self.quiet_period, SCAN_RETRY))
                raise
        next_delivery = self._deliver()
        if self._paused and mono >= self._next_paused_check:
            self._check_paused()  # unpaused meanwhile? (status and history say so)
        if mono >= self._next_follow:
            self._next_follow = mono + self.follow_interval
            self._follow()
        waits = [self._next_reconcile - mono, self._next_follow - mono, next_delivery]
        if due is not None:
            waits.append(due)
        if self._scan_at is not None:
            waits.append(self._scan_at - mono)
        return max(0.0, min(waits))

    # Scanning and deciding -----------------------------------------------------

    def _request_scan(self, reason: str, at: float) -> None:
        if self._scan_at is None or at < self._scan_at:
            self._scan_at = at
            self._scan_reason = reason

    def _scan(self) -> ScanResult | None:
        reason = self._scan_reason
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
            self._request_scan(reason, self.clock.monotonic() + self.quiet_period)
            return None
        except OSError as exc:
            # Retried (once logged): EMFILE, a hung mount or a fixed permission clears
            # without an event, and the reconcile may be an hour away.
            self._error(f"{self.root}: cannot read the data dir: {exc}")
            self._request_scan(reason, self.clock.monotonic() + max(self.quiet_period, SCAN_RETRY))
            return None
        self._report_skips(result.skipped)
        if not result.settled:
            log.info("files_not_settled", data_dir=str(self.root), files=list(result.unsettled[:5]))
            self._request_scan(reason, self.clock.monotonic() + self.quiet_period)
            return result
        METRICS.record_hash(
            result.seconds,
            result.hashed_bytes,
            result.manifest.total_bytes,
            result.hashed_files + result.cached_files,
        )
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

    def _on_manifest(self, result: ScanResult, reason: str) -> None:
        m = result.manifest
        now = self.clock.now()
        current = m.dataset_hash
        st = self.status
        st.last_error = None
        st.scans += 1
        st.last_scan_at = now
        st.last_hash, st.last_files = current, len(m.entries)
        log.info(
            "data_scanned",
            reason=reason,
            data_hash=current,
            files=len(m.entries),
            bytes=m.total_bytes,
            hashed_files=result.hashed_files,
            cached_files=result.cached_files,
            seconds=round(result.seconds, 3),
        )
        last = self.outbox.last_delivered_hash()
        pending = [r.data_hash for r in self.outbox.pending()]
        verdict = decide(current, len(m.entries), last, pending)
        first, self._first_scan = self._first_scan, False
        if verdict == "empty":
            if self._said_empty != current:
                self._said_empty = current
                log.info("data_dir_empty_not_triggering", data_dir=str(self.root))
                self.state.record(
                    "data.empty", f"{self.root}: no data files (empty or all ignored); no trigger"
                )
            if self.snapshots is None:  # frozen triggers still have their bytes: keep them
                self.outbox.supersede_pending(None, now)
            return
        self._said_empty = None
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
            data_dir = self._freeze(result, reason)
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
        if self.drift is not None and existing is None:
            conf |= self.drift.check(self.root, current)
        if self.outbox.enqueue(
            run_id, current, conf["reason"], conf, now, supersede=self.snapshots is None
        ):
            st.triggers += 1
            log.info("trigger_queued", run_id=run_id, new_snapshot=new_snapshot, **conf)
            fault_point("after_outbox_write")
        else:
            # This hash was delivered before (A → B → A): the run exists; don't run it twice.
            row = self.outbox.get(run_id)
            log.info("trigger_exists", run_id=run_id, status=row.status if row else None)
            if row is not None and row.status == "delivered":
                self.state.set_meta(META_LAST_DELIVERED, current)
                self._drop_after(current, now)

    def _drop_after(self, current: str, now: datetime) -> int:
        """The data is at a hash already delivered or queued: drop what no longer applies."""
        if self.snapshots is None:
            return self.outbox.supersede_pending(current, now)
        return self.outbox.supersede_after(current, now)

    def _freeze(self, result: ScanResult, reason: str) -> Path | None:
        """Snapshot the dataset; None when snapshots are off or the trigger must wait."""
        if self.snapshots is None:
            return None
        try:
            path = self.snapshots.freeze(self.root, result.manifest)
        except SnapshotStale as exc:
            log.info("data_changed_while_freezing", detail=str(exc))
            self.hasher.forget(exc.rel)  # a cached digest may be what is stale
            self._request_scan(reason, self.clock.monotonic() + self.quiet_period)
            return None
        except OSError as exc:
            message = f"snapshot into {self.snapshots.root} failed, trigger held: {exc}"
            if message != self._held:  # once per cause, not every SCAN_RETRY
                self._held = message
                self._error(message)
            self.status.last_error = message
            self._request_scan(reason, self.clock.monotonic() + SCAN_RETRY)
            return None
        self._held = None
        self._prune_snapshots(path.name)
        return path

    def _prune_snapshots(self, queuing: str | None = None) -> None:
        """``queuing``: the snapshot just frozen, whose trigger is not in the outbox yet."""
        if self.snapshots is None:
            return
        needed = {
            Path(r.conf["data_dir"]).name
            for r in [*self.outbox.pending(), *self.outbox.following()]
            if "source_dir" in r.conf
        }
        if queuing is not None:
            needed.add(queuing)
        try:
            removed = self.snapshots.prune(needed)
        except OSError as exc:
            log.warning("snapshot_prune_failed", error=str(exc))
            return
        if removed:
            log.info("snapshots_pruned", removed=removed)

    def request_retrain(self, reason: str) -> str | None:
        """Queue a deliberate retrain of the current data under a distinct, recorded run id."""
        data_hash = self.status.last_hash or self.outbox.last_delivered_hash()
        if data_hash is None:
            log.warning("retrain_skipped", reason=reason, why="no dataset hashed yet")
            return None
        (count,) = self.state.conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE run_id LIKE 'retrain__%'"
        ).fetchone()
        run_id = run_id_for(data_hash, "retrain", attempt=int(count) + 1)
        conf: dict[str, Any] = {
            "data_hash": data_hash,
            "data_dir": str(self.root),
            "file_count": self.status.last_files,
            "reason": "retrain",
            "note": reason,
        }
        if self.snapshots is not None and self.snapshots.path_for(data_hash).is_dir():
            conf |= {
                "data_dir": str(self.snapshots.path_for(data_hash)),
                "source_dir": conf["data_dir"],
            }
        self.outbox.enqueue(
            run_id, data_hash, "retrain", conf, self.clock.now(), supersede=self.snapshots is None
        )
        log.info("retrain_queued", run_id=run_id, reason=reason)
        return run_id

    # Delivery and following ----------------------------------------------------

    @property
    def _trigger(self) -> Trigger:
        if self.trigger is None:
            raise WatcherError("DataWatcher used before start()")
        return self.trigger

    def _deliver(self) -> float:
        """Deliver due triggers strictly in queue order (a later one never overtakes one
        still backing off); returns seconds until the next pending attempt."""
        now = self.clock.now()
        for row in self.outbox.pending():
            if datetime.fromisoformat(row.next_attempt_at) > now or self._busy():
                break
            if not self._deliver_one(row, now):
                break
        pending = self.outbox.pending()
        if not pending:
            return self.reconcile_interval
        if self._busy():
            return SERIAL_RECHECK
        soonest = min(datetime.fromisoformat(r.next_attempt_at) for r in pending)
        return max(0.0, (soonest - self.clock.now()).total_seconds())

    def _busy(self) -> bool:
        """A serial backend (local, command) still has a run going: the next one waits."""
        if not self._trigger.serial or not self.outbox.following():
            return False
        self._follow()  # cheap for child processes; may just have finished
        return bool(self.outbox.following())

    def _deliver_one(self, row: OutboxRow, now: datetime) -> bool:
        try:
            result = self._trigger.submit(row.run_id, {**self.settings, **row.conf})
        except TriggerUnavailable as exc:
            delay = self.outbox.mark_retry(row, str(exc), now=now, permanent=False)
            METRICS.record_trigger("retry")
            log.warning("trigger_retry", run_id=row.run_id, error=str(exc), retry_in=round(delay))
            return False
        except (TriggerError, WatcherError) as exc:
            # DAG not found / credentials refused: an operator must act, but the DAG may be
            # still deploying, so keep retrying (capped backoff) and say it loudly.
            delay = self.outbox.mark_retry(row, str(exc), now=now, permanent=True)
            METRICS.record_trigger("failed")
            log.error("trigger_rejected", run_id=row.run_id, error=str(exc), retry_in=round(delay))
            return False
        self.outbox.mark_delivered(row, created=result.created, run_state=result.state, now=now)
        METRICS.record_trigger("delivered" if result.created else "duplicate", now.timestamp())
        log.info("trigger_delivered", run_id=row.run_id, status=result.status)
        self._check_paused()
        return True

    def _check_paused(self) -> None:
        """Runs of a paused DAG stay queued forever: warn loudly once, and keep the state
        where `watcher status` shows it with how to unpause (Airflow only)."""
        is_paused = getattr(self.trigger, "is_paused", None)
        if is_paused is None:
            return
        self._next_paused_check = self.clock.monotonic() + PAUSED_RECHECK
        try:
            paused = bool(is_paused())
        except (TriggerError, WatcherError) as exc:
            log.debug("paused_check_failed", error=str(exc))
            return
        if paused == self._paused:
            return
        was, self._paused = self._paused, paused
        dag_id = str(getattr(self.trigger, "dag_id", "?"))
        unpause = (
            f"airflow dags unpause {dag_id}, the toggle in the Airflow UI, or PATCH "
            f'{getattr(self.trigger, "base_url", "")}/api/v2/dags/{dag_id} {{"is_paused": false}}'
        )
        doc = {"dag_id": dag_id, "paused": paused, "since": iso(self.clock.now())}
        with self.state.transaction() as tx:
            self.state.set_meta(META_DAG, json.dumps({**doc, "unpause": unpause}), conn=tx)
            if paused:
                msg = f"DAG {dag_id!r} is paused: its runs stay queued until it is unpaused"
                self.state.record("trigger.dag_paused", msg, conn=tx)
            elif was:
                self.state.record("trigger.dag_unpaused", f"DAG {dag_id!r} unpaused", conn=tx)
        if paused:
            log.warning("dag_paused", dag_id=dag_id, hint=f"unpause it: {unpause}")
        elif was:
            log.info("dag_unpaused", dag_id=dag_id)

    def _follow(self) -> None:
        now = self.clock.now()
        for row in self.outbox.following():
            try:
                run_state = self._trigger.run_state(row.run_id)
            except (TriggerError, WatcherError) as exc:
                log.debug("run_state_unavailable", run_id=row.run_id, error=str(exc))
                continue
            if run_state in TERMINAL_STATES:
                self._finish(row, run_state, now)
            elif run_state is None:
                self.outbox.set_run_state(
                    row, "missing", now=now, finished=True,
                    message=f"run {row.run_id} no longer exists on the {self.backend} backend",
                )  # fmt: skip
            elif self._timed_out(row, now):
                cancel = getattr(self.trigger, "cancel", None)
                if cancel is not None:
                    cancel(row.run_id)
                self.outbox.set_run_state(
                    row, "timed_out", now=now, finished=True,
                    message=f"run {row.run_id} still {run_state} after trigger.run_timeout; "
                    "no longer followed",
                )  # fmt: skip
            elif run_state != row.run_state:
                self.outbox.set_run_state(row, run_state, now=now, finished=False)

    def _timed_out(self, row: OutboxRow, now: datetime) -> bool:
        if row.delivered_at is None:
            return False
        return now - datetime.fromisoformat(row.delivered_at) > timedelta(seconds=self.run_timeout)

    def _finish(self, row: OutboxRow, run_state: str, now: datetime) -> None:
        payload: dict[str, Any] = {"backend": self.backend}
        summary = getattr(self.trigger, "summary", None)
        exit_code = getattr(self.trigger, "exit_code", None)
        if exit_code is not None:
            payload["exit_code"] = exit_code(row.run_id)
        if summary is not None:
            with contextlib.suppress(Exception):
                s = summary(row.run_id)
                if s:
                    payload["summary"] = s
        self.outbox.set_run_state(
            row,
            run_state,
            now=now,
            finished=True,
            message=f"run {row.run_id} {'succeeded' if run_state == 'success' else 'failed'}",
            payload=payload,
        )
        log.info("run_finished", run_id=row.run_id, state=run_state)
        self._prune_snapshots()
        if self.drift is not None and run_state == "success":
            self.drift.after_run(row.run_id, row.conf)
