"""alerts/ has its own small hierarchy: it must not import watcher/ (watcher depends on us)."""

from __future__ import annotations

from alerts.redaction import redact


class AlertsError(Exception):
    """Base class for every error raised by alerts/."""


class AlertValidationError(AlertsError, ValueError):
    """An alert, matcher or route is malformed; the message names the field."""


class NotifyError(AlertsError):
    """A notifier could not deliver. The message never contains a secret."""

    def __init__(self, channel: str, reason: str) -> None:
        self.channel = channel
        self.reason = reason
        super().__init__(f"notifier {channel!r} failed: {reason}")


def describe_error(exc: BaseException) -> str:
    """A log- and DB-safe one-line description of a notifier failure."""
    if isinstance(exc, NotifyError):
        return exc.reason
    if isinstance(exc, AlertsError):
        return redact(str(exc))
    # An unexpected error type: its text may hold anything, so only its name.
    return f"unexpected {type(exc).__name__}"
