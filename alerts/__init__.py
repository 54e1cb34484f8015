"""Alerts: model, lifecycle (dedup / repeat / resolve), routing, outbox and notifiers.

Depends on nothing else in the project (watcher/ and pipeline/ depend on it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alerts.dispatcher import Backoff, DeliveryReport, Dispatcher
    from alerts.errors import AlertsError, AlertValidationError, NotifyError
    from alerts.lifecycle import DEFAULT_REPEAT_INTERVAL, AlertState, Evaluation, evaluate
    from alerts.model import (
        Alert,
        AlertStatus,
        Notification,
        NotificationKind,
        fingerprint,
        make_alert,
    )
    from alerts.notifiers.base import Notifier
    from alerts.oneshot import send_now
    from alerts.routing import Matcher, Route, Router
    from alerts.schema import SCHEMA
    from alerts.store import AlertStore, Delivery, ensure_schema

# Lazy: `alerts.redaction` (every CLI command that loads the config) must not pull in
# the dispatcher and structlog through this package.
_HOMES = {
    "Backoff": "dispatcher",
    "DeliveryReport": "dispatcher",
    "Dispatcher": "dispatcher",
    "AlertsError": "errors",
    "AlertValidationError": "errors",
    "NotifyError": "errors",
    "DEFAULT_REPEAT_INTERVAL": "lifecycle",
    "AlertState": "lifecycle",
    "Evaluation": "lifecycle",
    "evaluate": "lifecycle",
    "Alert": "model",
    "AlertStatus": "model",
    "Notification": "model",
    "NotificationKind": "model",
    "fingerprint": "model",
    "make_alert": "model",
    "Notifier": "notifiers.base",
    "send_now": "oneshot",
    "Matcher": "routing",
    "Route": "routing",
    "Router": "routing",
    "SCHEMA": "schema",
    "AlertStore": "store",
    "Delivery": "store",
    "ensure_schema": "store",
}

__all__ = [
    "DEFAULT_REPEAT_INTERVAL",
    "SCHEMA",
    "Alert",
    "AlertState",
    "AlertStatus",
    "AlertStore",
    "AlertValidationError",
    "AlertsError",
    "Backoff",
    "Delivery",
    "DeliveryReport",
    "Dispatcher",
    "Evaluation",
    "Matcher",
    "Notification",
    "NotificationKind",
    "Notifier",
    "NotifyError",
    "Route",
    "Router",
    "ensure_schema",
    "evaluate",
    "fingerprint",
    "make_alert",
    "send_now",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'alerts' has no attribute {name!r}")
    return getattr(importlib.import_module(f"alerts.{home}"), name)
