"""Secrets (webhook/Slack URLs, SMTP password, HMAC key) never leak into errors, reprs or logs."""

from __future__ import annotations

import logging
import socket

import pytest
import structlog

from alerts import AlertStore, Backoff, Dispatcher, NotifyError, send_now
from alerts.notifiers.email import EmailNotifier
from alerts.notifiers.slack import SlackNotifier
from alerts.notifiers.webhook import WebhookNotifier
from alerts.redaction import REDACTED, Secret, redact
from tests.alerts.conftest import Receiver, accuracy_alert

SLACK_PATH = "/services/T0SECRET/B0SECRET/xoxSlackToken0001"
HOOK_PATH = "/hooks/token-7f3a9c2e41"
HMAC_KEY = "hmac-secret-0c4d1e"
SMTP_PASSWORD = "smtp-password-66aa"
SECRETS = ("T0SECRET", "xoxSlackToken0001", "token-7f3a9c2e41", HMAC_KEY, SMTP_PASSWORD)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_secrets_absent_from_errors_logs_reprs_and_store(
    receiver: Receiver,
    store: AlertStore,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Failing deliveries on every secret-bearing channel leave no secret anywhere visible."""
    receiver.statuses = [404, 404]
    receiver.echo_path = True  # the server quotes the secret path back in its error body
    slack = SlackNotifier(receiver.url + SLACK_PATH, timeout=2)
    hook = WebhookNotifier(receiver.url + HOOK_PATH, hmac_secret=HMAC_KEY, timeout=2)
    mail = EmailNotifier(
        host="127.0.0.1",
        port=_closed_port(),
        username="watcher",
        password=SMTP_PASSWORD,
        from_addr="w@example.org",
        to_addrs=["ops@example.org"],
        timeout=2,
    )
    dispatcher = Dispatcher(store, [slack, hook, mail], backoff=Backoff(), random=lambda: 0.5)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # the daemon's logging config quiets httpx
    try:
        with structlog.testing.capture_logs() as events:
            dispatcher.process("policy", [accuracy_alert()], accuracy_alert().starts_at)
            report = dispatcher.deliver_due(accuracy_alert().starts_at)
            oneshot = send_now(accuracy_alert(), [slack, hook, mail])
    finally:
        dispatcher.close()

    assert report.failed == 3
    assert set(report.errors) == {"slack", "webhook", "email"}
    assert "HTTP 404" in report.errors["slack"]
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)  # httpx did log
    visible = "\n".join(
        [
            caplog.text,
            "\n".join(r.getMessage() for r in caplog.records),
            capsys.readouterr().out,
            repr(events),
            repr(report),
            repr(oneshot),
            repr([slack, hook, mail]),
            repr([d.last_error for d in store.pending()]),
        ]
    )
    for secret in SECRETS:
        assert secret not in visible, secret
    assert REDACTED in visible


def test_notify_error_text_has_no_url(receiver: Receiver) -> None:
    """The exception a caller sees names the status but not the Slack URL."""
    receiver.statuses = [500]
    receiver.echo_path = True
    with SlackNotifier(receiver.url + SLACK_PATH) as slack, pytest.raises(NotifyError) as caught:
        slack.send([])  # empty batch: no request
        from alerts import Notification, NotificationKind

        slack.send([Notification(accuracy_alert(), NotificationKind.FIRING, 1)])
    text = f"{caught.value} {caught.value!r} {caught.value.reason}"
    assert "HTTP 500" in text
    assert "xoxSlackToken0001" not in text


def test_secret_wrapper_and_redact() -> None:
    """Secret hides itself in str/repr; redact scrubs registered values, longest first."""
    secret = Secret("abc-secret-value-1")
    assert "abc-secret-value-1" not in f"{secret} {secret!r}"
    assert secret.reveal() == "abc-secret-value-1"
    assert redact("url=https://x/abc-secret-value-1/p") == f"url=https://x/{REDACTED}/p"
