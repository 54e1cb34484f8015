"""Send one alert right now, without a daemon or a store (e.g. an Airflow failure callback).

Never raises for a delivery problem: a failure callback must not fail the task
again. It returns the error per channel instead (secret-free text).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import structlog

from alerts.errors import describe_error
from alerts.model import Alert, Notification, NotificationKind

if TYPE_CHECKING:
    from alerts.notifiers.base import Notifier

_log = structlog.get_logger("alerts")


def send_now(
    alert: Alert,
    channels: Iterable[Notifier],
    kind: NotificationKind | None = None,
) -> dict[str, str | None]:
    """Deliver ``alert`` to every channel once; map channel name -> error (None = sent)."""
    if kind is None:
        kind = NotificationKind.FIRING if alert.ends_at is None else NotificationKind.RESOLVED
    note = Notification(alert, kind, sequence=0)
    results: dict[str, str | None] = {}
    for notifier in channels:
        if kind is NotificationKind.RESOLVED and not notifier.send_resolved:
            continue
        try:
            notifier.send([note])
        except Exception as exc:  # report, never raise, from a callback
            results[notifier.name] = describe_error(exc)
            _log.warning("alert not sent", channel=notifier.name, error=results[notifier.name])
        else:
            results[notifier.name] = None
    return results
