"""Slack notifier: Block Kit message, firing and resolved, posted to a local receiver."""

from __future__ import annotations

import json
from datetime import timedelta

from alerts import Notification, NotificationKind
from alerts.notifiers.slack import SlackNotifier, slack_payload
from tests.alerts.conftest import T0, Receiver, accuracy_alert


def test_firing_and_resolved_messages(receiver: Receiver) -> None:
    """Both kinds arrive as blocks with a text fallback naming the alert, model and version."""
    alert = accuracy_alert("iris", "3")
    with SlackNotifier(receiver.url + "/services/T000/B000/XXXXSECRET") as notifier:
        notifier.send([Notification(alert, NotificationKind.FIRING, 1)])
        notifier.send(
            [Notification(alert.resolved(T0 + timedelta(hours=1)), NotificationKind.RESOLVED, 2)]
        )
    firing, resolved = (json.loads(r.body) for r in receiver.requests)
    assert firing["text"] == "[FIRING] ModelAccuracyLow iris v3"
    assert resolved["text"] == "[RESOLVED] ModelAccuracyLow iris v3"
    section = firing["blocks"][0]
    assert section["type"] == "section"
    assert ":rotating_light:" in section["text"]["text"]
    assert "accuracy 0.71 &lt; 0.85" in section["text"]["text"]  # Slack mrkdwn escaping
    assert {"type": "mrkdwn", "text": "*model*\niris"} in section["fields"]
    assert ":white_check_mark:" in resolved["blocks"][0]["text"]["text"]
    assert "resolved 2026-01-01T13:00:00+00:00" in resolved["blocks"][1]["elements"][0]["text"]


def test_large_batches_stay_within_slack_limits() -> None:
    """Blocks stay under Slack's 50-block cap; the overflow is summarised."""
    notes = [
        Notification(accuracy_alert(version=str(v)), NotificationKind.FIRING, 1) for v in range(30)
    ]
    payload = slack_payload(notes)
    assert len(payload["blocks"]) <= 50
    assert payload["blocks"][-1]["elements"][0]["text"] == "…and 10 more"
