"""Notifier backends; each module holds one."""

from __future__ import annotations

from alerts.notifiers.base import Notifier, ResendingNotifier

__all__ = ["Notifier", "ResendingNotifier"]
