"""File (JSONL, 0600) and log (structlog) notifiers."""

from __future__ import annotations

import json
import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
import structlog

from alerts import Notification, NotificationKind, NotifyError
from alerts.notifiers.file import FileNotifier
from alerts.notifiers.log import LogNotifier
from tests.alerts.conftest import T0, accuracy_alert


def test_file_is_created_0600_and_appends_jsonl(tmp_path: Path) -> None:
    """A new file gets mode 0600 even under a permissive umask; each alert is one JSON line."""
    path = tmp_path / "alerts.jsonl"
    notifier = FileNotifier(path)
    old_umask = os.umask(0)
    try:
        notifier.send([Notification(accuracy_alert(), NotificationKind.FIRING, 1)])
    finally:
        os.umask(old_umask)
    ended = accuracy_alert().resolved(T0 + timedelta(hours=1))
    notifier.send([Notification(ended, NotificationKind.RESOLVED, 2)])

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["kind"], r["status"], r["sequence"]) for r in lines] == [
        ("firing", "firing", 1),
        ("resolved", "resolved", 2),
    ]
    assert lines[0]["fingerprint"] == accuracy_alert().fingerprint
    assert lines[0]["labels"]["model"] == "iris"
    assert (lines[0]["endsAt"], lines[1]["endsAt"]) == (None, (T0 + timedelta(hours=1)).isoformat())


def test_unwritable_file_is_notify_error(tmp_path: Path) -> None:
    """A path in a missing directory raises NotifyError naming the file."""
    notifier = FileNotifier(tmp_path / "missing" / "alerts.jsonl", name="audit")
    with pytest.raises(
        NotifyError, match=r"notifier 'audit' failed: cannot append to .*alerts.jsonl"
    ):
        notifier.send([Notification(accuracy_alert(), NotificationKind.FIRING, 1)])


def test_log_notifier_emits_structured_events() -> None:
    """Firing logs at warning, resolved at info, with labels and fingerprint as fields."""
    alert = accuracy_alert()
    with structlog.testing.capture_logs() as logs:
        LogNotifier().send(
            [
                Notification(alert, NotificationKind.FIRING, 1),
                Notification(alert.resolved(T0 + timedelta(hours=1)), NotificationKind.RESOLVED, 2),
            ]
        )
    assert [(e["event"], e["log_level"], e["kind"]) for e in logs] == [
        ("alert", "warning", "firing"),
        ("alert", "info", "resolved"),
    ]
    assert logs[0]["fingerprint"] == alert.fingerprint
    assert logs[0]["labels"]["version"] == "3"
