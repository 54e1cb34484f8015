"""send_now: the daemon-less path used by the pipeline's failure callback."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from alerts import NotificationKind, send_now
from alerts.notifiers.file import FileNotifier
from alerts.notifiers.webhook import WebhookNotifier
from tests.alerts.conftest import T0, Receiver, accuracy_alert


def test_delivers_to_every_channel_and_reports_failures(tmp_path: Path, receiver: Receiver) -> None:
    """Each channel is tried once; a failure is reported per channel, never raised."""
    receiver.statuses = [503]
    path = tmp_path / "alerts.jsonl"
    with WebhookNotifier(receiver.url, name="hook") as hook:
        result = send_now(accuracy_alert(), [FileNotifier(path), hook])
    assert result == {"file": None, "hook": "HTTP 503: boom"}
    (line,) = path.read_text().splitlines()
    assert json.loads(line)["kind"] == "firing"


def test_resolved_alert_respects_send_resolved(tmp_path: Path) -> None:
    """A resolved alert goes out as kind=resolved, skipping channels that opted out."""
    ended = accuracy_alert().resolved(T0 + timedelta(minutes=1))
    quiet = FileNotifier(tmp_path / "quiet.jsonl", name="quiet", send_resolved=False)
    loud = FileNotifier(tmp_path / "loud.jsonl", name="loud")
    assert send_now(ended, [quiet, loud]) == {"loud": None}
    assert not (tmp_path / "quiet.jsonl").exists()
    record = json.loads((tmp_path / "loud.jsonl").read_text())
    assert record["kind"] == NotificationKind.RESOLVED.value
