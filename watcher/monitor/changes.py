"""Registry changes: diff each poll against what the state DB remembers, record, notify.

A model seen for the first time is "watched"; then new, deleted and archived
versions, Production moves and deleted models become history events (in
``registry_models`` and ``events``, one transaction) and info notifications.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import TYPE_CHECKING

from alerts.model import Alert, make_alert
from watcher.monitor import table
from watcher.monitor.table import ModelRow
from watcher.ports import ARCHIVED_STAGE, ModelSnapshot, matches
from watcher.runtime.logging import get_logger

if TYPE_CHECKING:
    from watcher.ports import AlertSink
    from watcher.runtime.metrics import Metrics
    from watcher.runtime.state import StateStore

log = get_logger("watcher.monitor.changes")

# (kind, model, message, version)
Change = tuple[str, str, str, str | None]

_INFO_ALERTS = {
    "registry.production_changed": "ModelProductionChanged",
    "registry.version_created": "ModelVersionCreated",
    "registry.version_archived": "ModelVersionArchived",
    "registry.version_deleted": "ModelVersionDeleted",
    "registry.model_deleted": "ModelDeleted",
}


class RegistryChanges:
    """The registry-diff half of the monitor. Tests drive it through the Monitor."""

    def __init__(
        self,
        patterns: Sequence[str],
        state: StateStore,
        alerts: AlertSink | None,
        metrics: Metrics | None,
    ) -> None:
        self.patterns = patterns
        self.state = state
        self.alerts = alerts
        self.metrics = metrics
        self._known: dict[str, ModelRow] = {}

    def load(self) -> None:
        self._known = table.load(self.state)

    def apply(
        self, snaps: Sequence[ModelSnapshot], now: datetime, only: AbstractSet[str] | None = None
    ) -> None:
        """Record and notify what changed since the last poll (or the last run). ``only``:
        the read covered these models alone (a webhook hint); the others are not gone."""
        events, changed = self._changes(snaps, only)
        if not changed:
            return
        ids = self._record(snaps, events, changed, now)
        for name, known in changed.items():
            if known is None:
                self._known.pop(name, None)
            else:
                self._known[name] = known
            if self.metrics is not None:
                self.metrics.set_production(name, None if known is None else known.production)
        for _eid, (kind, model, message, version) in ids:
            log.info("registry_event", kind=kind, model=model, version=version, message=message)
        self._notify([i for i in ids if i[1][0] != "registry.model_watched"], now)

    def _changes(
        self, snaps: Sequence[ModelSnapshot], only: AbstractSet[str] | None
    ) -> tuple[list[Change], dict[str, ModelRow | None]]:
        """History events and the rows to store (None: delete)."""
        events: list[Change] = []
        seen: set[str] = set()
        changed: dict[str, ModelRow | None] = {}
        for snap in snaps:
            seen.add(snap.name)
            new = ModelRow(snap.production, {v: i.stage for v, i in snap.versions.items()})
            old = self._known.get(snap.name)
            if old is None:
                prod = f"Production v{snap.production}" if snap.production else "no Production"
                message = f"watching {snap.name}: {len(new.stages)} version(s), {prod}"
                events.append(("registry.model_watched", snap.name, message, snap.production))
                changed[snap.name] = new
            elif old != new:
                changed[snap.name] = new
                events.extend(_version_events(snap.name, old, new))
        for name in list(self._known):
            if only is not None and name not in only:
                continue
            if name not in seen and matches(name, self.patterns):
                events.append(("registry.model_deleted", name, f"{name} was deleted", None))
                changed[name] = None
        return events, changed

    def _record(
        self,
        snaps: Sequence[ModelSnapshot],
        events: Sequence[Change],
        changed: dict[str, ModelRow | None],
        now: datetime,
    ) -> list[tuple[int, Change]]:
        """Events and rows in one transaction; the events with their ids."""
        ids: list[tuple[int, Change]] = []
        with self.state.transaction() as tx:
            for change in events:
                kind, model, message, version = change
                eid = self.state.record(
                    kind, message, model=model, version=version, at=now, conn=tx
                )
                ids.append((eid, change))
            for name, known in changed.items():
                if known is None:
                    table.delete(tx, name)
                else:
                    accuracy = _training_accuracy(snaps, name, known.production)
                    table.save(tx, name, known, now, accuracy)
        return ids

    def _notify(self, events: Sequence[tuple[int, Change]], now: datetime) -> None:
        if self.alerts is None or not events:
            return
        notes: list[tuple[Alert, int]] = []
        for eid, (kind, model, message, version) in events:
            labels = {"model": model, "event": kind}
            if version is not None:
                labels["version"] = version
            alert = make_alert(
                _INFO_ALERTS.get(kind, "ModelRegistryEvent"),
                starts_at=now,
                severity="info",
                summary=message,
                **labels,
            )
            # The event id makes each notification unique in the outbox (idempotent enqueue).
            notes.append((alert, eid))
        self.alerts.events(notes)


def _training_accuracy(
    snaps: Sequence[ModelSnapshot], name: str, version: str | None
) -> float | None:
    """The `accuracy` tag the pipeline wrote on the Production version, if any."""
    for snap in snaps:
        if snap.name == name and version is not None and version in snap.versions:
            raw = snap.versions[version].tags.get("accuracy")
            try:
                return float(raw) if raw is not None else None
            except ValueError:
                return None
    return None


def _version_events(name: str, old: ModelRow, new: ModelRow) -> list[Change]:
    out: list[Change] = []
    for v in sorted(set(new.stages) - set(old.stages), key=int):
        out.append(("registry.version_created", name, f"{name} v{v} registered", v))
    for v in sorted(set(old.stages) - set(new.stages), key=int):
        out.append(("registry.version_deleted", name, f"{name} v{v} was deleted", v))
    for v in sorted(set(old.stages) & set(new.stages), key=int):
        if new.stages[v] == ARCHIVED_STAGE and old.stages[v] != ARCHIVED_STAGE:
            out.append(("registry.version_archived", name, f"{name} v{v} was archived", v))
    if old.production != new.production:
        was = f"v{old.production}" if old.production else "none"
        if new.production is None:
            msg = f"{name} has no Production version (was {was})"
        else:
            msg = f"{name} v{new.production} is now Production (was {was})"
        out.append(("registry.production_changed", name, msg, new.production))
    return out
