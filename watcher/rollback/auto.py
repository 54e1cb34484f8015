"""Automatic rollback: the daemon component that acts on a firing live-metric alert.

The monitor decides *that* Production's live metric (accuracy, rmse…) breached the policy (read here
through the read-only ``ports.Verdicts`` view); this
component decides *whether* to roll back (``rollback.policy.decide_auto``:
rollback.after, cooldown, flap guard, target quarantined or below threshold)
and runs the journaled rollback. At start it finishes any rollback a crash
interrupted. Refusals are recorded and alerted once per breach, never retried
in a loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from alerts import make_alert
from watcher.errors import LockHeld, RegistryError
from watcher.monitor.policy import Status, window_stats
from watcher.rollback.journal import Plan, Rollbacker
from watcher.rollback.policy import AutoGuards, decide_auto, prior_stable
from watcher.runtime.component import Health
from watcher.runtime.lock import ROLLBACK_LOCK_NAME, StateLock
from watcher.runtime.logging import get_logger
from watcher.runtime.metrics import METRICS
from watcher.runtime.once import OncePerCause

if TYPE_CHECKING:
    from pathlib import Path

    from watcher.config import RollbackConfig
    from watcher.monitor.policy import PolicyConfig
    from watcher.ports import AlertSink, Registry, RetrainQueue, Verdicts
    from watcher.runtime.clock import Clock
    from watcher.runtime.state import StateStore

log = get_logger("watcher.rollback.auto")
ACTOR = "registry-watcher (automatic)"


class AutoRollback:
    name = "rollback"

    def __init__(
        self,
        config: RollbackConfig,
        policies: Callable[[str], PolicyConfig],
        verdicts: Verdicts,
        registry: Registry,
        state: StateStore,
        state_dir: Path,
        clock: Clock,
        alerting: AlertSink | None,
        retrain: RetrainQueue | None = None,
    ) -> None:
        self.config = config
        # Per model: its metric, threshold and window (MonitorConfig.policy_for).
        self.policies = policies
        self.guards = AutoGuards(
            after=config.after,
            cooldown=config.cooldown,
            max_per_window=config.max_per_window,
            window=config.window,
        )
        self.verdicts = verdicts
        self.registry = registry
        self.state = state
        self.state_dir = state_dir
        self.clock = clock
        self.alerting = alerting
        self.retrain = retrain
        self.rollbacker = Rollbacker(registry, state, clock, alerting)
        # Breaches already acted on live in the state DB (rollback.Handled): a restart
        # must not act twice on one breach episode, nor undo an operator's choice.
        self.handled = self.rollbacker.handled
        self._waiting: set[tuple[str, str]] = set()
        self._left_alone: set[tuple[str, str]] = set()  # logged once each
        self._refused_here: set[tuple[str, str]] = set()  # refusals stand for this process only
        # The error deferring each piece of work (recovery, one model): logged once per cause.
        self._errors: dict[tuple[str, str], OncePerCause] = {}
        self._last_error: str | None = None  # … and shown in health
        self.rollbacks = 0

    def _lock(self) -> StateLock:
        return StateLock(self.state_dir, "watcher run (rollback)", ROLLBACK_LOCK_NAME)

    def start(self) -> None:
        try:
            with self._lock():
                for outcome in self.rollbacker.recover():
                    log.warning("rollback_recovered", message=outcome.message)
            self._said("rollback_recovery_deferred").clear()
        except (LockHeld, RegistryError) as exc:
            # `watcher rollback` is running, or MLflow is down: tick() retries.
            self._deferred("rollback_recovery_deferred", exc)

    def stop(self) -> None:
        return None

    def health(self) -> Health:
        detail: dict[str, object] = {
            "auto": self.config.auto,
            "dry_run": self.config.dry_run,
            "rollbacks": self.rollbacks,
        }
        if self._last_error:
            detail["last_error"] = self._last_error
        return Health(self.name, True, detail)

    def tick(self) -> float | None:
        if self.rollbacker.pending():
            self.start()  # an interrupted rollback whose recovery was deferred
        if not self.config.auto:
            return None
        # A read-only copy of frozen decisions: what the monitor decided last, whichever of
        # the two ticked first in this pass (its wake-up brings the next pass at once).
        for model, decision in sorted(self.verdicts.verdicts().items()):
            version = decision.state.version
            since = decision.state.firing_since
            if decision.status in (Status.OK, Status.RESOLVED, Status.INCONCLUSIVE):
                # Production and not breaching (inconclusive never follows firing): the breach
                # episode ended, or never began; a new one may be acted on.
                if self.handled.clear(model, version):
                    self._left_alone.discard((model, version))
                    log.info("rollback_episode_ended", model=model, version=version)
                continue
            if not decision.firing or since is None or self._acted_on(model, version):
                continue
            try:
                self._consider(model, version, since)
                self._said("rollback_deferred", model).clear()
            except (RegistryError, LockHeld) as exc:
                self._deferred("rollback_deferred", exc, model=model)
        return None

    def _deferred(self, event: str, exc: Exception, **where: str) -> None:
        """MLflow down or `watcher rollback` holding the lock: retried next tick, logged
        once per cause (not at every tick of an outage)."""
        self._last_error = str(exc)
        if self._said(event, where.get("model", "")).first(str(exc)):
            log.warning(event, error=str(exc), **where)

    def _said(self, event: str, model: str = "") -> OncePerCause:
        return self._errors.setdefault((event, model), OncePerCause())

    def _acted_on(self, model: str, version: str) -> bool:
        why = self.handled.why(model, version)
        if why == "dry_run" and not self.config.dry_run:
            why = None  # a preview changed nothing: with dry_run now off, act on the breach
        elif why == "refused" and (model, version) not in self._refused_here:
            why = None  # refused by an earlier process: decide again (its guards may differ)
        if why is not None and (model, version) not in self._left_alone:
            self._left_alone.add((model, version))
            log.info("rollback_not_repeated", model=model, version=version, handled=why)
        return why is not None

    def _consider(self, model: str, version: str, firing_since: datetime) -> None:
        if self.registry.production(model) != version:
            with self.state.transaction() as tx:  # Production already moved (by hand?)
                self.handled.mark(model, version, "moved", tx)
            return
        target = prior_stable(
            version, lambda v: self.registry.get_version(model, v), self._history(model)
        )
        target_info = self.registry.get_version(model, target.version) if target.version else None
        objective = self.policies(model)
        live = None
        if target.version is not None:
            obs = self.verdicts.observations(model, target.version)
            live = window_stats(obs, objective.window, objective.metric)[0] if obs else None
        now = self.clock.now()
        recent = [datetime.fromisoformat(t) for t in self.rollbacker.automatic_times(model)]
        decision = decide_auto(
            now=now,
            firing_since=firing_since,
            guards=self.guards,
            recent=recent,
            target=target,
            target_info=target_info,
            target_live=live,
            objective=objective,
        )
        if decision.wait:
            if (model, version) not in self._waiting:
                self._waiting.add((model, version))
                log.info("rollback_waiting", model=model, version=version, reason=decision.reason)
            return
        if not decision.allowed or target.version is None:
            self._refuse(model, version, decision.reason)
            return
        side = "below" if objective.catalogue().direction == "higher" else "above"
        reason = (
            f"live {objective.metric} of v{version} {side} {objective.threshold:g} (alert firing)"
        )
        with self._lock():
            outcome = self.rollbacker.execute(
                Plan(model, version, target.version, reason, ACTOR),
                dry_run=self.config.dry_run,
                automatic=True,
            )
        METRICS.rollbacks.labels(model=model, result="dry_run" if outcome.dry_run else "done").inc()
        if not outcome.dry_run:
            self.rollbacks += 1
            if self.config.retrain and self.retrain is not None:
                self.retrain.request_retrain(
                    f"retrain after rollback of {model} to v{target.version}"
                )

    def _refuse(self, model: str, version: str, reason: str) -> None:
        METRICS.rollbacks.labels(model=model, result="refused").inc()
        self._refused_here.add((model, version))
        message = f"{model}: automatic rollback of v{version} refused: {reason}"
        log.warning("rollback_refused", model=model, version=version, reason=reason)
        with self.state.transaction() as tx:
            event_id = self.state.record(
                "rollback.refused",
                message,
                model=model,
                version=version,
                payload={"reason": reason},
                conn=tx,
            )
            self.handled.mark(model, version, "refused", tx)
        if self.alerting is not None:
            alert = make_alert(
                "RollbackRefused",
                starts_at=self.clock.now(),
                severity="critical",
                summary=message,
                description="Production keeps serving the breaching version; act by hand "
                "(`watcher rollback`) if needed.",
                model=model,
                version=version,
            )
            self.alerting.event(alert, event_id)

    def _history(self, model: str) -> list[str]:
        """Past Production versions recorded by the monitor, newest first."""
        events = self.state.events(model=model, kinds=["registry.production_changed"])
        return [e.version for e in reversed(events) if e.version]
