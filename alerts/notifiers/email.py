"""SMTP notifier: plain-text mail, STARTTLS or implicit TLS (``ssl``), optional auth."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import TYPE_CHECKING, Final, Literal

from alerts.errors import NotifyError
from alerts.notifiers.base import DEFAULT_TIMEOUT_S, Channel
from alerts.redaction import Secret, redact

if TYPE_CHECKING:
    from alerts.model import Notification

Security = Literal["starttls", "ssl", "none"]
_KIND_WORD: Final = {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED"}


def email_subject(notifications: Sequence[Notification]) -> str:
    first = notifications[0]
    labels = first.alert.labels
    subject = f"[{_KIND_WORD[first.kind]}] {labels['alertname']}"
    if "model" in labels:
        subject += f" {labels['model']}"
        if "version" in labels:
            subject += f" v{labels['version']}"
    if len(notifications) > 1:
        subject += f" (+{len(notifications) - 1} more)"
    return subject


def email_body(notifications: Sequence[Notification]) -> str:
    parts: list[str] = []
    for note in notifications:
        alert = note.alert
        lines = [f"{_KIND_WORD[note.kind]}: {alert.name}"]
        for key in ("summary", "description"):
            if key in alert.annotations:
                lines.append(alert.annotations[key])
        lines.append("")
        lines.extend(f"  {k}: {v}" for k, v in alert.labels.items())
        lines.append(f"  started: {alert.starts_at.isoformat()}")
        if alert.ends_at is not None:
            lines.append(f"  resolved: {alert.ends_at.isoformat()}")
        if "runbook_url" in alert.annotations:
            lines.append(f"  runbook: {alert.annotations['runbook_url']}")
        if alert.generator_url:
            lines.append(f"  source: {alert.generator_url}")
        lines.append(f"  fingerprint: {alert.fingerprint}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


class EmailNotifier(Channel):
    def __init__(
        self,
        *,
        host: str,
        port: int,
        from_addr: str,
        to_addrs: Sequence[str],
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        name: str = "email",
        send_resolved: bool = True,
        timeout: float = DEFAULT_TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in ("starttls", "ssl", "none"):
            raise ValueError(
                f"email channel {name!r}: security must be starttls, ssl or none, got {security!r}"
            )
        if not to_addrs:
            raise ValueError(f"email channel {name!r}: to_addrs is empty")
        if (username is None) != (password is None):
            raise ValueError(f"email channel {name!r}: username and password go together")
        self._host = host
        self._port = port
        self._from = from_addr
        self._to = tuple(to_addrs)
        self._security: Security = security
        self._username = username
        self._password = Secret(password) if password is not None else None
        super().__init__(name, send_resolved)
        self._timeout = timeout
        self._ssl_context = ssl_context

    def build_message(self, notifications: Sequence[Notification]) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = email_subject(notifications)
        message["From"] = self._from
        message["To"] = ", ".join(self._to)
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="registry-watcher")
        message.set_content(email_body(notifications))
        return message

    def send(self, notifications: Sequence[Notification]) -> None:
        if not notifications:
            return
        message = self.build_message(notifications)
        context = self._ssl_context or ssl.create_default_context()
        try:
            smtp: smtplib.SMTP
            if self._security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    self._host, self._port, timeout=self._timeout, context=context
                )
            else:
                smtp = smtplib.SMTP(self._host, self._port, timeout=self._timeout)
            with smtp:
                if self._security == "starttls":
                    smtp.starttls(context=context)
                if self._username is not None and self._password is not None:
                    smtp.login(self._username, self._password.reveal())
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            # `from None`: never chain an exception that could echo AUTH material.
            reason = f"{type(exc).__name__}: {redact(str(exc))[:300]}"
            raise NotifyError(self._name, reason) from None

    def __repr__(self) -> str:
        return (
            f"EmailNotifier(name={self._name!r}, host={self._host!r}, port={self._port}, "
            f"security={self._security!r}, username={self._username!r}, "
            f"password={self._password!r})"
        )
