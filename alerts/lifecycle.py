"""Alertmanager-like notification decisions. Pure: no I/O, and ``now`` is passed in.

Per alert (fingerprint): notify once when it starts firing, again only after
``repeat_interval`` while it keeps firing, and once when it clears. Fan-out to
channels, routing and ``send_resolved`` happen later (routing.plan_deliveries).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final

from alerts.errors import AlertValidationError
from alerts.model import Alert, AlertStatus, Notification, NotificationKind

DEFAULT_REPEAT_INTERVAL: Final = timedelta(hours=4)


@dataclass(frozen=True)
class AlertState:
    """What the store remembers about one alert between evaluations."""

    fingerprint: str
    source: str
    alert: Alert
    status: AlertStatus
    sequence: int  # notifications emitted so far for this fingerprint
    last_notified_at: datetime


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one evaluation: what to send, and the states to store."""

    notifications: tuple[Notification, ...]
    states: tuple[AlertState, ...]  # only the states that changed


def evaluate(
    source: str,
    active: Iterable[Alert],
    states: Mapping[str, AlertState],
    now: datetime,
    repeat_interval: timedelta = DEFAULT_REPEAT_INTERVAL,
) -> Evaluation:
    """Decide notifications for ``source`` given its currently ``active`` alerts.

    ``states`` maps fingerprint to stored state (other sources' states are ignored
    when deciding what resolved). An active alert keeps the ``starts_at`` of its
    episode; its annotations follow the latest evaluation.
    """
    if now.tzinfo is None:
        raise AlertValidationError(f"now must be timezone-aware, got {now!r}")
    if repeat_interval <= timedelta(0):
        raise AlertValidationError(f"repeat_interval must be positive, got {repeat_interval}")

    current: dict[str, Alert] = {}
    for alert in active:
        fp = alert.fingerprint
        if fp in current:
            raise AlertValidationError(
                f"source {source!r}: alert {alert.name!r} appears twice with labels "
                f"{dict(alert.labels)}"
            )
        if alert.ends_at is not None:
            raise AlertValidationError(
                f"source {source!r}: active alert {alert.name!r} has ends_at set"
            )
        current[fp] = alert

    notifications: list[Notification] = []
    changed: list[AlertState] = []

    for fp, alert in current.items():
        state = states.get(fp)
        if state is None or state.status is AlertStatus.RESOLVED:
            sequence = 0 if state is None else state.sequence
            note = Notification(alert, NotificationKind.FIRING, sequence + 1)
            notifications.append(note)
            changed.append(AlertState(fp, source, alert, AlertStatus.FIRING, sequence + 1, now))
            continue
        # Still firing: keep the episode's start, take the newest annotations.
        kept = replace(alert, starts_at=state.alert.starts_at)
        if now - state.last_notified_at >= repeat_interval:
            note = Notification(kept, NotificationKind.REPEAT, state.sequence + 1)
            notifications.append(note)
            changed.append(
                replace(
                    state, source=source, alert=kept, sequence=note.sequence, last_notified_at=now
                )
            )
        elif kept != state.alert or state.source != source:
            changed.append(replace(state, source=source, alert=kept))

    for fp, state in sorted(states.items()):
        if state.source != source or state.status is not AlertStatus.FIRING or fp in current:
            continue
        ended = state.alert.resolved(now)
        note = Notification(ended, NotificationKind.RESOLVED, state.sequence + 1)
        notifications.append(note)
        changed.append(
            replace(
                state,
                alert=ended,
                status=AlertStatus.RESOLVED,
                sequence=note.sequence,
                last_notified_at=now,
            )
        )

    return Evaluation(tuple(notifications), tuple(changed))
