"""Live accuracy of each Production version: policy state, verdicts, alerts, the saved policy.

Fed by the monitor after each poll (:meth:`AccuracyWatch.observe`), evaluated in the
daemon thread (:meth:`AccuracyWatch.evaluate`). The policy state survives restarts in
the state DB (``META_POLICY``); the verdicts are what rollback reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

from alerts.model import Alert, make_alert
from watcher.monitor import table
from watcher.monitor.policy import (
    Decision,
    Observation,
    PolicyConfig,
    PolicyState,
    Status,
    evaluate,
    observation_problem,
)
from watcher.runtime.logging import get_logger
from watcher.runtime.state import META_POLICY

if TYPE_CHECKING:
    from watcher.config import MonitorConfig
    from watcher.ports import AlertSink, ProductionMoves
    from watcher.runtime.clock import Clock
    from watcher.runtime.metrics import Metrics
    from watcher.runtime.state import StateStore

log = get_logger("watcher.monitor.accuracy")

ACCURACY_SOURCE = "monitor.accuracy"
ACCURACY_ALERT = "ModelAccuracyLow"

Observed = dict[tuple[str, str], list[Observation]]


def policy_config(cfg: MonitorConfig) -> PolicyConfig:
    return PolicyConfig(
        min_accuracy=cfg.min_accuracy,
        window=cfg.window,
        min_samples=cfg.min_samples,
        for_=cfg.for_,
        keep_firing_for=cfg.keep_firing_for,
    )


def load_policy(state: StateStore) -> dict[str, PolicyState]:
    """The policy state per model as last saved (``META_POLICY``)."""
    raw = state.get_meta(META_POLICY)
    if not raw:
        return {}
    return {model: PolicyState.from_json(data) for model, data in json.loads(raw).items()}


def save_policy(state: StateStore, policies: Mapping[str, PolicyState]) -> None:
    state.set_meta(META_POLICY, json.dumps({m: s.to_json() for m, s in sorted(policies.items())}))


def shown_status(status: Status) -> str:
    """The alert state the gauge shows (resolved is ok again)."""
    return "ok" if status is Status.RESOLVED else status.value


class AccuracyWatch:
    """The accuracy half of the monitor. Tests drive it through the Monitor."""

    def __init__(
        self,
        config: MonitorConfig,
        state: StateStore,
        alerts: AlertSink | None,
        clock: Clock,
        metrics: Metrics | None,
        moves: ProductionMoves | None = None,
    ) -> None:
        self.policy = policy_config(config)
        self.moves = moves
        self.state = state
        self.alerts = alerts
        self.clock = clock
        self.metrics = metrics
        self.due: datetime | None = None  # when time alone may change a status
        self._production: dict[str, str | None] = {}
        self._observations: Observed = {}
        self._policy: dict[str, PolicyState] = {}
        self._verdicts: dict[str, Decision] = {}
        self._live_saved: dict[str, tuple[float | None, int]] = {}
        self._skipped: set[tuple[str, str, Observation]] = set()  # reported once each

    def load(self) -> None:
        self._policy = load_policy(self.state)
        self._restore_gauges()

    # Reading (rollback, status) --------------------------------------------------------

    def verdicts(self) -> Mapping[str, Decision]:
        return MappingProxyType(dict(self._verdicts))

    def observations(self, model: str, version: str) -> list[Observation]:
        return list(self._observations.get((model, version), []))

    def policy_state(self, model: str) -> PolicyState | None:
        return self._policy.get(model)

    def models(self) -> int:
        return len(self._production)

    def firing(self) -> list[str]:
        return sorted(m for m, d in self._verdicts.items() if d.firing)

    # Deciding ----------------------------------------------------------------------

    def observe(
        self, production: Mapping[str, str | None], observed: Observed, at: datetime
    ) -> None:
        """What one successful poll saw: Production per model and its observations."""
        self._production = dict(production)
        self._observations = self._usable(observed, at)

    def _usable(self, observations: Observed, now: datetime) -> Observed:
        """Leave out observations the policy cannot use, whatever their source: one
        stamped further in the future than the clock skew would stay the newest in the
        window for ever. Each is logged once."""
        out: Observed = {}
        for (model, version), obs in observations.items():
            out[(model, version)] = kept = []
            for o in obs:
                problem = observation_problem(o.accuracy, o.samples, o.at, now)
                if problem is None:
                    kept.append(o)
                elif (model, version, o) not in self._skipped:
                    self._skipped.add((model, version, o))
                    log.warning("observation_skipped", model=model, version=version, reason=problem)
        return out

    def evaluate(self, now: datetime) -> bool:
        """Evaluate every Production version; true when a verdict changed."""
        active: list[Alert] = []
        due: list[datetime] = []
        verdicts: dict[str, Decision] = {}
        for model, version in sorted(self._production.items()):
            if version is None:
                continue
            decision = verdicts[model] = self._decide(model, version, now)
            if decision.next_check is not None:
                due.append(decision.next_check)
            if decision.firing:
                active.append(self._alert(model, decision))
        changed = verdicts != self._verdicts
        self._verdicts = verdicts
        policies = {m: d.state for m, d in verdicts.items()}
        if policies != self._policy:
            self._policy = policies
            save_policy(self.state, policies)
        self.due = min(due) if due else None
        if self.alerts is not None:
            self.alerts.evaluate(ACCURACY_SOURCE, active)
        return changed

    def _decide(self, model: str, version: str, now: datetime) -> Decision:
        state = self._policy.get(model)
        if state is None or state.version != version:
            state = PolicyState(version)  # a newly promoted version starts clean
        obs = self._observations.get((model, version), [])
        decision = evaluate(state, obs, self.policy, now)
        self._transition(model, state, decision, now)
        self._save_live(model, decision)
        if self.metrics is not None:
            self.metrics.set_alert_state(model, shown_status(decision.status))
            if decision.accuracy is not None:
                self.metrics.live_accuracy.labels(model=model).set(decision.accuracy)
        return decision

    def _save_live(self, model: str, decision: Decision) -> None:
        live = (decision.accuracy, decision.samples)
        if self._live_saved.get(model) == live:
            return
        self._live_saved[model] = live
        table.save_live(self.state, model, decision.accuracy, decision.samples)

    def _transition(self, model: str, old: PolicyState, decision: Decision, now: datetime) -> None:
        new = decision.status
        if new is old.status:
            return
        version = decision.state.version
        log.info(
            "accuracy_state",
            model=model,
            version=version,
            state=new.value,
            previous=old.status.value,
            accuracy=decision.accuracy,
            samples=decision.samples,
        )
        if new not in (Status.PENDING, Status.FIRING, Status.RESOLVED):
            return  # the history keeps alert transitions; ok/inconclusive are in status
        self.state.record(
            f"monitor.accuracy_{new.value}",
            f"{model} v{version} live accuracy {new.value}: {decision.reason}",
            model=model,
            version=version,
            payload={"accuracy": decision.accuracy, "samples": decision.samples},
            at=now,
        )

    def _alert(self, model: str, decision: Decision) -> Alert:
        version = decision.state.version
        acc = "n/a" if decision.accuracy is None else f"{decision.accuracy:.4f}"
        return make_alert(
            ACCURACY_ALERT,
            starts_at=decision.state.firing_since or self.clock.now(),
            severity="critical",
            summary=f"{model} v{version} live accuracy {acc} below {self.policy.min_accuracy}",
            description=decision.reason,
            model=model,
            version=version,
        )

    # Restart --------------------------------------------------------------------------

    def _restore_gauges(self) -> None:
        """What the state DB knows, on /metrics from the first scrape after a restart (the
        gauges are otherwise set only when a poll sees a change)."""
        if self.metrics is None:
            return
        for row in table.production_rows(self.state):
            # A rollback (`watcher rollback`, by hand) that moved Production after the last
            # poll saw it is newer than the poll's row: show what it left.
            moved = self.moves.moved_since(row.model, row.observed_at) if self.moves else None
            prod = moved or row.production
            live = row.live_accuracy if prod == row.production else None  # the polled one's
            self.metrics.set_production(row.model, prod)
            if prod is None:
                continue
            policy = self._policy.get(row.model)
            if policy is None or policy.version != prod:
                # Not evaluated since it became Production: what the policy says of a
                # version before its first evaluation, until the first poll.
                self.metrics.set_alert_state(row.model, Status.INCONCLUSIVE.value)
                continue
            self.metrics.set_alert_state(row.model, shown_status(policy.status))
            if live is not None:
                self.metrics.live_accuracy.labels(model=row.model).set(float(live))
