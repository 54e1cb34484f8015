"""Webhook notifier: Alertmanager v4 body to a real local HTTP receiver, HMAC signature."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from alerts import Notification, NotificationKind, NotifyError
from alerts.notifiers.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    verify_signature,
)
from tests.alerts.conftest import T0, Receiver, accuracy_alert

SECRET = "hmac-key-5b1d0c7e"
V4_KEYS = {
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
}
ALERT_KEYS = {
    "status",
    "labels",
    "annotations",
    "startsAt",
    "endsAt",
    "generatorURL",
    "fingerprint",
}


def test_signed_v4_payload_is_received_and_verifiable(receiver: Receiver) -> None:
    """The receiver gets a complete v4 body whose signature verifies with the shared secret."""
    alerts = [accuracy_alert("iris", "3"), accuracy_alert("iris", "4")]
    notes = [Notification(a, NotificationKind.FIRING, 1) for a in alerts]
    with WebhookNotifier(
        receiver.url + "/alerts",
        name="ops-hook",
        hmac_secret=SECRET,
        external_url="http://watcher.local",
        clock=lambda: 1_767_268_800.0,
    ) as notifier:
        notifier.send(notes)

    (request,) = receiver.requests
    body = json.loads(request.body)
    assert set(body) == V4_KEYS
    assert (body["version"], body["status"], body["receiver"]) == ("4", "firing", "ops-hook")
    assert body["groupLabels"] == {"alertname": "ModelAccuracyLow"}
    assert body["groupKey"] == '{}:{alertname="ModelAccuracyLow"}'
    assert body["commonLabels"] == {
        "alertname": "ModelAccuracyLow",
        "model": "iris",
        "severity": "critical",
    }
    assert body["externalURL"] == "http://watcher.local"
    assert [set(a) for a in body["alerts"]] == [ALERT_KEYS, ALERT_KEYS]
    assert [a["fingerprint"] for a in body["alerts"]] == [a.fingerprint for a in alerts]
    assert body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"

    timestamp = request.headers[TIMESTAMP_HEADER]
    signature = request.headers[SIGNATURE_HEADER]
    assert timestamp == "1767268800"
    assert signature.startswith("sha256=")
    at = 1767268800.0  # the notifier's clock: within the default replay window
    assert verify_signature(SECRET, timestamp, request.body, signature, now=at)
    assert not verify_signature("wrong-secret", timestamp, request.body, signature, now=at)
    assert not verify_signature(SECRET, timestamp, request.body + b" ", signature, now=at)
    assert not verify_signature(SECRET, "1767268801", request.body, signature, now=at)


def test_replay_window() -> None:
    """verify_signature with max_age_s rejects stale or malformed timestamps."""
    from alerts.notifiers.webhook import sign

    header = sign(SECRET, "1000", b"{}")
    assert verify_signature(SECRET, "1000", b"{}", header, max_age_s=300, now=1200)
    assert not verify_signature(SECRET, "1000", b"{}", header, max_age_s=300, now=1400)
    assert not verify_signature(SECRET, "soon", b"{}", header, max_age_s=300, now=1000)


def test_resolved_payload(receiver: Receiver) -> None:
    """A resolve is status "resolved" with a real endsAt; no signature headers when unsigned."""
    ended = accuracy_alert().resolved(T0 + timedelta(minutes=7))
    with WebhookNotifier(receiver.url) as notifier:
        notifier.send([Notification(ended, NotificationKind.RESOLVED, 2)])
    (request,) = receiver.requests
    body = json.loads(request.body)
    assert body["status"] == "resolved"
    assert body["alerts"][0]["endsAt"] == (T0 + timedelta(minutes=7)).isoformat()
    assert SIGNATURE_HEADER not in request.headers


def test_http_error_is_notify_error_without_url(receiver: Receiver) -> None:
    """A 500 raises NotifyError naming the status but not the (secret) URL."""
    receiver.statuses = [500]
    url = receiver.url + "/token-abcdef123456"
    with WebhookNotifier(url) as notifier, pytest.raises(NotifyError) as caught:
        notifier.send([Notification(accuracy_alert(), NotificationKind.FIRING, 1)])
    assert "HTTP 500" in str(caught.value)
    assert "token-abcdef123456" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_connection_refused_is_notify_error() -> None:
    """Transport failures map to NotifyError (connection refused on a closed port)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        WebhookNotifier(f"http://127.0.0.1:{port}/x", timeout=2) as notifier,
        pytest.raises(NotifyError, match="ConnectError"),
    ):
        notifier.send([Notification(accuracy_alert(), NotificationKind.FIRING, 1)])


def test_silent_server_times_out_as_notify_error() -> None:
    """A receiver that accepts but never answers is cut off by the explicit timeout."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # never accept(): the request is never answered
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/x"
        with (
            WebhookNotifier(url, timeout=0.3) as notifier,
            pytest.raises(NotifyError, match=r"timed out \(ReadTimeout\)"),
        ):
            notifier.send([Notification(accuracy_alert(), NotificationKind.FIRING, 1)])
