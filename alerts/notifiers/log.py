"""Log notifications through structlog (one event per alert)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from alerts.model import Notification, NotificationKind
from alerts.notifiers.base import Channel


class LogNotifier(Channel):
    def __init__(
        self, *, name: str = "log", send_resolved: bool = True, logger: Any | None = None
    ) -> None:
        super().__init__(name, send_resolved)
        self._log: Any = logger if logger is not None else structlog.get_logger("alerts")

    def send(self, notifications: Sequence[Notification]) -> None:
        for note in notifications:
            alert = note.alert
            emit = self._log.info if note.kind is NotificationKind.RESOLVED else self._log.warning
            emit(
                "alert",
                kind=note.kind.value,
                alertname=alert.name,
                fingerprint=alert.fingerprint,
                labels=dict(alert.labels),
                annotations=dict(alert.annotations),
                starts_at=alert.starts_at.isoformat(),
                ends_at=alert.ends_at.isoformat() if alert.ends_at else None,
            )

    def __repr__(self) -> str:
        return f"LogNotifier(name={self._name!r})"
