"""The notifier port: one module per backend implements it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from alerts.model import Notification

DEFAULT_TIMEOUT_S = 10.0


@runtime_checkable
class Notifier(Protocol):
    """A channel. ``send`` delivers a batch or raises :class:`alerts.errors.NotifyError`."""

    @property
    def name(self) -> str: ...

    @property
    def send_resolved(self) -> bool: ...

    def send(self, notifications: Sequence[Notification]) -> None: ...


@runtime_checkable
class ResendingNotifier(Notifier, Protocol):
    """A channel that wants active alerts re-sent periodically (Alertmanager's API)."""

    @property
    def resend_interval(self) -> timedelta: ...


class Channel:
    """What every notifier shares: its channel name and whether it sends resolved notices."""

    def __init__(self, name: str, send_resolved: bool) -> None:
        self._name = name
        self._send_resolved = send_resolved

    @property
    def name(self) -> str:
        return self._name

    @property
    def send_resolved(self) -> bool:
        return self._send_resolved
