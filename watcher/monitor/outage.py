"""A backend the monitor reads being unreachable (MLflow, a live-observation source such as
Prometheus): one log line and history event when it starts, one on recovery (with the
duration), the alert after a grace, resolved when the backend answers again."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from alerts.model import Alert, make_alert
from watcher.runtime.logging import get_logger
from watcher.runtime.once import OncePerCause
from watcher.runtime.state import iso

if TYPE_CHECKING:
    from watcher.ports import AlertSink
    from watcher.runtime.metrics import Metrics
    from watcher.runtime.state import StateStore

log = get_logger("watcher.monitor.poll")

MLFLOW_SOURCE = "monitor.mlflow"
MLFLOW_DOWN_ALERT = "MlflowUnreachable"
OBSERVATIONS_DOWN_ALERT = "ObservationSourceUnreachable"


@dataclass(frozen=True, slots=True)
class OutageKind:
    """How one backend's outage is told: its name in messages, the log events, the history
    event kinds, the alert (name, labels) and the alert source it is evaluated under."""

    name: str
    down_log: str
    up_log: str
    down_event: str
    up_event: str
    alert: str
    alert_source: str
    labels: Mapping[str, str] = field(default_factory=dict)


MLFLOW = OutageKind(
    "MLflow",
    "mlflow_unreachable",
    "mlflow_reachable_again",
    "registry.unreachable",
    "registry.reachable",
    MLFLOW_DOWN_ALERT,
    MLFLOW_SOURCE,
)


def observation_source(source: str) -> OutageKind:
    """A live-observation source (``prometheus``): ObservationSourceUnreachable{source}."""
    return OutageKind(
        source,
        "observations_unreachable",
        "observations_reachable_again",
        "monitor.observations_unreachable",
        "monitor.observations_reachable",
        OBSERVATIONS_DOWN_ALERT,
        f"monitor.observations.{source}",
        {"source": source},
    )


class Outage:
    """One backend unreachable: one event and log line per outage, the alert after a grace."""

    def __init__(
        self,
        kind: OutageKind,
        alert_after: float,
        state: StateStore,
        alerts: AlertSink | None,
    ) -> None:
        self.kind = kind
        self.alert_after = alert_after
        self.state = state
        self.alerts = alerts
        self.since: datetime | None = None
        self.error: str | None = None
        self._once = OncePerCause()

    def failed(self, error: str | None, at: datetime, now: datetime) -> None:
        kind = self.kind
        if self._once.first():
            self.since = at
            # Once per outage: the recovery line carries the duration.
            log.warning(kind.down_log, **kind.labels, error=error, since=iso(at))
            self.state.record(
                kind.down_event,
                f"{kind.name} unreachable: {error}",
                payload={**kind.labels, "error": error},
                at=now,
            )
        self.error = error
        self.alert(now)

    def reachable(self, at: datetime, now: datetime) -> None:
        kind = self.kind
        if self._once.clear() and self.since is not None:
            outage = (at - self.since).total_seconds()
            log.info(kind.up_log, **kind.labels, outage_seconds=round(outage, 1))
            self.state.record(
                kind.up_event,
                f"{kind.name} reachable again after {outage:.0f}s",
                payload={**kind.labels, "outage_seconds": outage},
                at=now,
            )
        self.since = None
        self.error = None
        self.alert(now)

    def alert(self, now: datetime) -> None:
        if self.alerts is None:
            return
        active: list[Alert] = []
        if self.since is not None:
            down_for = (now - self.since).total_seconds()
            if down_for < self.alert_after:
                # Undecided, not recovered: after a restart mid-outage the alert persisted as
                # firing must not be resolved (and re-fired a moment later) by this early poll.
                return
            active.append(
                make_alert(
                    self.kind.alert,
                    starts_at=self.since,
                    severity="critical",
                    summary=f"{self.kind.name} unreachable for {down_for:.0f}s",
                    description=str(self.error or ""),
                    component="monitor",
                    **self.kind.labels,
                )
            )
        self.alerts.evaluate(self.kind.alert_source, active)


class SourceOutages:
    """The outages of the live-observation sources, one :class:`Outage` per source. Known
    sources are tracked from the start, so an alert left firing by a restart mid-outage
    is resolved by the first poll that reads them."""

    def __init__(
        self,
        names: tuple[str, ...],
        alert_after: float,
        state: StateStore,
        alerts: AlertSink | None,
    ) -> None:
        self.alert_after = alert_after
        self.state = state
        self.alerts = alerts
        self.outages = {n: Outage(observation_source(n), alert_after, state, alerts) for n in names}

    def polled(
        self, down: Mapping[str, str], at: datetime, now: datetime, metrics: Metrics | None
    ) -> None:
        """One registry poll read the sources: ``down`` maps each unreadable one to why."""
        for name in down:
            if metrics is not None:
                metrics.poll_errors.labels(backend=name).inc()
            if name not in self.outages:
                kind = observation_source(name)
                self.outages[name] = Outage(kind, self.alert_after, self.state, self.alerts)
        for name, outage in self.outages.items():
            if name in down:
                outage.failed(down[name], at, now)
            else:
                outage.reachable(at, now)

    def down(self) -> dict[str, Outage]:
        return {n: o for n, o in sorted(self.outages.items()) if o.since is not None}

    def detail(self, polled: bool) -> dict[str, object]:
        """Health detail: whether the sources answered, since when not and why."""
        if not self.outages:
            return {}
        down = self.down()
        detail: dict[str, object] = {"observations_reachable": polled and not down}
        if down:
            detail["observations_down_since"] = iso(min(o.since for o in down.values() if o.since))
            detail["observations_error"] = "; ".join(f"{n}: {o.error}" for n, o in down.items())
        return detail
