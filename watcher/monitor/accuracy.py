"""The live metric of each Production version: policy state, verdicts, alerts, the saved policy.

Each model is judged on its own metric (``monitor.metric``, or its
``[monitor.overrides]`` entry): accuracy by default, alerted as ``ModelAccuracyLow``;
any other metric as ``ModelMetricBreach`` with a ``metric`` label.

Fed by the monitor after each poll (:meth:`AccuracyWatch.observe`), evaluated in the
daemon thread (:meth:`AccuracyWatch.evaluate`). The policy state survives restarts in
the state DB (``META_POLICY``); the verdicts are what rollback reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
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
MAX_SKIPPED = 10_000  # unusable observations remembered (each is logged once)

ACCURACY_SOURCE = "monitor.accuracy"
ACCURACY_ALERT = "ModelAccuracyLow"  # accuracy keeps its name: existing routes match it
METRIC_ALERT = "ModelMetricBreach"  # any other metric, named in the ``metric`` label

Observed = dict[tuple[str, str], list[Observation]]


def alert_name(metric: str) -> str:
    return ACCURACY_ALERT if metric == "accuracy" else METRIC_ALERT


def event_kind(metric: str, status: Status) -> str:
    """History event of a policy transition: ``monitor.accuracy_firing`` as before for
    accuracy, ``monitor.metric_firing`` for any other metric."""
    return f"monitor.{'accuracy' if metric == 'accuracy' else 'metric'}_{status.value}"


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
    """The live-metric half of the monitor. Tests drive it through the Monitor."""

    def __init__(
        self,
        config: MonitorConfig,
        state: StateStore,
        alerts: AlertSink | None,
        clock: Clock,
        metrics: Metrics | None,
        moves: ProductionMoves | None = None,
    ) -> None:
        self.config = config
        self._policies: dict[str, PolicyConfig] = {}
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
        self._live_saved: dict[str, tuple[str, float | None, int]] = {}
        self._skipped: set[tuple[str, str, Observation]] = set()  # reported once each
        self._partial = False  # the last read missed a source of observations

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

    def policy(self, model: str) -> PolicyConfig:
        """``model``'s policy (its metric, threshold, window…), resolved once."""
        found = self._policies.get(model)
        if found is None:
            found = self._policies[model] = self.config.policy_for(model)
        return found

    # Deciding ----------------------------------------------------------------------

    def observe(
        self,
        production: Mapping[str, str | None],
        observed: Observed,
        at: datetime,
        only: AbstractSet[str] | None = None,
        *,
        partial: bool = False,
    ) -> None:
        """What one successful poll saw: Production per model and its observations.
        ``only``: a read of these models alone (a webhook hint); the others stay.
        ``partial``: a source of observations was down (see ``_decide``)."""
        self._partial = partial
        if only is None:
            self._production = dict(production)
            self._observations = self._usable(observed, at)
            return
        for name in only:
            self._production.pop(name, None)
        self._production.update(production)
        kept = {k: v for k, v in self._observations.items() if k[0] not in only}
        self._observations = {**kept, **self._usable(observed, at)}

    def _usable(self, observations: Observed, now: datetime) -> Observed:
        """Each model's observations of its own metric (another metric reported for it is
        not watched), leaving out those the policy cannot use, whatever their source: one
        stamped further in the future than the clock skew would stay the newest in the
        window for ever. Each is logged once."""
        out: Observed = {}
        for (model, version), obs in observations.items():
            out[(model, version)] = kept = []
            watched = self.policy(model).metric
            for o in obs:
                if o.metric != watched:
                    continue
                problem = observation_problem(o.value, o.samples, o.at, now, metric_name=o.metric)
                if problem is None:
                    kept.append(o)
                elif (model, version, o) not in self._skipped:
                    if len(self._skipped) >= MAX_SKIPPED:  # bounded: forget, say again later
                        self._skipped.clear()
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
        decision = evaluate(state, obs, self.policy(model), now)
        if self._partial and decision.status not in (Status.PENDING, Status.FIRING):
            # Part of the evidence may start an alert, never end one or call a model ok.
            decision = evaluate(state, [], self.policy(model), now)
        self._transition(model, state, decision, now)
        self._save_live(model, decision)
        if self.metrics is not None:
            self.metrics.set_alert_state(model, shown_status(decision.status))
            if decision.value is not None:
                self.metrics.set_live(model, decision.metric, decision.value)
        return decision

    def _save_live(self, model: str, decision: Decision) -> None:
        live = (decision.metric, decision.value, decision.samples)
        if self._live_saved.get(model) == live:
            return
        self._live_saved[model] = live
        table.save_live(self.state, model, decision.metric, decision.value, decision.samples)

    def _transition(self, model: str, old: PolicyState, decision: Decision, now: datetime) -> None:
        new = decision.status
        if new is old.status:
            return
        version = decision.state.version
        name = decision.metric
        log.info(
            "accuracy_state" if name == "accuracy" else "metric_state",
            model=model,
            version=version,
            state=new.value,
            previous=old.status.value,
            metric=name,
            value=decision.value,
            samples=decision.samples,
        )
        if new not in (Status.PENDING, Status.FIRING, Status.RESOLVED):
            return  # the history keeps alert transitions; ok/inconclusive are in status
        payload: dict[str, object] = {"metric": name, "value": decision.value}
        if name == "accuracy":
            payload["accuracy"] = decision.value  # what readers of the history know
        self.state.record(
            event_kind(name, new),
            f"{model} v{version} live {name} {new.value}: {decision.reason}",
            model=model,
            version=version,
            payload={**payload, "samples": decision.samples},
            at=now,
        )

    def _alert(self, model: str, decision: Decision) -> Alert:
        version = decision.state.version
        policy = self.policy(model)
        name = decision.metric
        value = "n/a" if decision.value is None else f"{decision.value:.4f}"
        side = "below" if policy.catalogue().direction == "higher" else "above"
        # Accuracy's alert keeps its labels as they were (no ``metric``): an upgrade must
        # not resolve and re-fire an alert that is firing, nor break a route.
        labels = {} if name == "accuracy" else {"metric": name}
        return make_alert(
            alert_name(name),
            starts_at=decision.state.firing_since or self.clock.now(),
            severity="critical",
            summary=f"{model} v{version} live {name} {value} {side} {policy.threshold:g}",
            description=decision.reason,
            model=model,
            version=version,
            **labels,
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
            polled = prod == row.production  # the live value is the polled version's
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
            if polled and row.live_metric is not None and row.live_value is not None:
                self.metrics.set_live(row.model, row.live_metric, float(row.live_value))
