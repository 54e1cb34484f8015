"""Delivery: outbox → trigger backend → follow the run → its outcome in the history.

Triggers go out strictly in queue order (a later one never overtakes one still
backing off); a serial backend (local, command) gets one run at a time. Delivered
runs are followed until they end, time out or vanish, and the run hooks hear how
they ended. Also the retrain queue (rollback asks for a deliberate retrain) and
the DAG-paused report (runs of a paused DAG stay queued forever).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from watcher.errors import TriggerError, WatcherError
from watcher.ports import TriggerUnavailable
from watcher.runtime.clock import Clock, SystemClock
from watcher.runtime.component import Health
from watcher.runtime.logging import get_logger
from watcher.runtime.metrics import METRICS
from watcher.runtime.state import META_DAG, iso
from watcher.trigger.base import TERMINAL_STATES, pipeline_settings, run_id_for

if TYPE_CHECKING:
    from watcher.config import Config
    from watcher.ports import DatasetView, RunHooks, Trigger
    from watcher.runtime.state import StateStore
    from watcher.trigger.outbox import Outbox, OutboxRow

log = get_logger("watcher.trigger.delivery")

FOLLOW_INTERVAL = 10.0
SERIAL_RECHECK = 1.0  # seconds between checks whether a serial backend's run has ended
PAUSED_RECHECK = 60.0  # while the DAG is paused, how often to look whether it was unpaused


class Delivery:
    """Daemon component: delivers the outbox's triggers and follows their runs."""

    name = "trigger"

    def __init__(
        self,
        config: Config,
        state: StateStore,
        trigger: Trigger,
        outbox: Outbox,
        dataset: DatasetView,
        *,
        hooks: Sequence[RunHooks] = (),
        clock: Clock | None = None,
        follow_interval: float | None = None,
    ) -> None:
        self.state = state
        self.trigger = trigger
        self.outbox = outbox
        self.dataset = dataset
        self.hooks = list(hooks)
        self.clock: Clock = clock or SystemClock()
        self.settings = pipeline_settings(config)  # sent with every run (see _deliver_one)
        self.backend = config.trigger.backend
        self.run_timeout = config.trigger.run_timeout
        # Without snapshots a newer trigger supersedes an undelivered one (its bytes are gone).
        self.supersede = config.watch.snapshot_dir is None
        self.idle_wait = config.watch.reconcile_interval
        self.follow_interval = FOLLOW_INTERVAL if follow_interval is None else follow_interval
        self._next_follow = 0.0
        self._paused: bool | None = None  # the DAG's state as last seen (Airflow only)
        self._next_paused_check = 0.0

    # Component protocol --------------------------------------------------------

    def start(self) -> None:
        delivered = self.outbox.last_delivered_at()
        if delivered is not None:  # after a restart /metrics shows it from the first scrape
            METRICS.last_trigger.set(delivered.timestamp())
        self._check_paused()

    def stop(self) -> None:
        self.trigger.close()

    def health(self) -> Health:
        # Pending triggers and delivery errors are the data component's readiness.
        detail: dict[str, object] = {
            "backend": self.backend,
            "following_runs": len(self.outbox.following()),
        }
        if self._paused:
            detail["dag_paused"] = True
        return Health(self.name, True, detail)

    def tick(self) -> float:
        mono = self.clock.monotonic()
        next_delivery = self._deliver()
        if self._paused and mono >= self._next_paused_check:
            self._check_paused()  # unpaused meanwhile? (status and history say so)
        if mono >= self._next_follow:
            self._next_follow = mono + self.follow_interval
            self._follow()
        return max(0.0, min(self._next_follow - mono, next_delivery))

    def cancel_following(self) -> None:
        """Stop the runs still followed (where the backend can), e.g. when a demo ends."""
        for row in self.outbox.following():
            self.trigger.cancel(row.run_id)

    # The retrain queue (ports.RetrainQueue) ------------------------------------

    def request_retrain(self, reason: str) -> str | None:
        """Queue a deliberate retrain of the current data under a distinct, recorded run id."""
        conf = self.dataset.retrain_conf()
        if conf is None:
            log.warning("retrain_skipped", reason=reason, why="no dataset hashed yet")
            return None
        data_hash = str(conf["data_hash"])
        run_id = run_id_for(data_hash, "retrain", attempt=self.outbox.retrains() + 1)
        conf |= {"reason": "retrain", "note": reason}
        now = self.clock.now()
        self.outbox.enqueue(run_id, data_hash, "retrain", conf, now, supersede=self.supersede)
        log.info("retrain_queued", run_id=run_id, reason=reason)
        return run_id

    # Delivering ----------------------------------------------------------------

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
            return self.idle_wait
        if self._busy():
            return SERIAL_RECHECK
        soonest = min(datetime.fromisoformat(r.next_attempt_at) for r in pending)
        return max(0.0, (soonest - self.clock.now()).total_seconds())

    def _busy(self) -> bool:
        """A serial backend (local, command) still has a run going: the next one waits."""
        if not self.trigger.serial or not self.outbox.following():
            return False
        self._follow()  # cheap for child processes; may just have finished
        return bool(self.outbox.following())

    def _deliver_one(self, row: OutboxRow, now: datetime) -> bool:
        try:
            result = self.trigger.submit(row.run_id, {**self.settings, **row.conf})
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
        where `watcher status` shows it with how to unpause (backends with a pause only)."""
        try:
            paused = self.trigger.is_paused()
        except (TriggerError, WatcherError) as exc:
            self._next_paused_check = self.clock.monotonic() + PAUSED_RECHECK
            log.debug("paused_check_failed", error=str(exc))
            return
        if paused is None:
            return  # the backend has no pause
        self._next_paused_check = self.clock.monotonic() + PAUSED_RECHECK
        if paused == self._paused:
            return
        was, self._paused = self._paused, paused
        self._report_paused(paused, was=bool(was))

    def _report_paused(self, paused: bool, *, was: bool) -> None:
        dag_id = self.trigger.dag_id or "?"
        unpause = (
            f"airflow dags unpause {dag_id}, the toggle in the Airflow UI, or PATCH "
            f'{self.trigger.base_url or ""}/api/v2/dags/{dag_id} {{"is_paused": false}}'
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

    # Following -----------------------------------------------------------------

    def _follow(self) -> None:
        now = self.clock.now()
        for row in self.outbox.following():
            try:
                run_state = self.trigger.run_state(row.run_id)
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
                self.trigger.cancel(row.run_id)
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
        exit_code = self.trigger.exit_code(row.run_id)
        if exit_code is not None:
            payload["exit_code"] = exit_code
        with contextlib.suppress(Exception):
            summary = self.trigger.summary(row.run_id)
            if summary:
                payload["summary"] = summary
        self.outbox.set_run_state(
            row,
            run_state,
            now=now,
            finished=True,
            message=f"run {row.run_id} {'succeeded' if run_state == 'success' else 'failed'}",
            payload=payload,
        )
        log.info("run_finished", run_id=row.run_id, state=run_state)
        for hook in self.hooks:
            hook.after_run(row.run_id, row.conf, run_state)
