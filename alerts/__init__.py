"""Alerts: model, lifecycle (dedup / repeat / resolve), routing, outbox and notifiers.

Depends on nothing else in the project (watcher/ and pipeline/ depend on it).
"""

from __future__ import annotations

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
from alerts.store import SCHEMA, AlertStore, Delivery, ensure_schema

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
