"""Email notifier against a real SMTP server (aiosmtpd, in-process on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import email
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from alerts import Notification, NotificationKind, NotifyError
from alerts.notifiers.email import EmailNotifier
from tests.alerts.conftest import T0, accuracy_alert

pytestmark = pytest.mark.service
PASSWORD = "smtp-pass-9f8e7d6c"


@dataclass
class Inbox:
    messages: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password == PASSWORD.encode()
        if ok:
            self.logins.append(data.login.decode())
        # handled=False: let aiosmtpd answer 535 itself (its default leaves the client hanging).
        return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A self-signed certificate for 127.0.0.1 and matching server/client contexts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory: Path = tmp_path_factory.mktemp("tls")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return Tls(server, client)


@pytest.fixture
def plain_smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


@pytest.fixture
def starttls_smtp(tls: Tls) -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=_free_port(),
        tls_context=tls.server,
        require_starttls=True,
        authenticator=inbox.authenticate,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def test_plain_smtp_receives_the_facts(plain_smtp: tuple[Inbox, int]) -> None:
    """The mail has a clear subject and a plain-text body with labels, times and runbook."""
    inbox, port = plain_smtp
    notifier = EmailNotifier(
        host="127.0.0.1",
        port=port,
        security="none",
        from_addr="watcher@example.org",
        to_addrs=["ops@example.org", "ml@example.org"],
    )
    notifier.send([Notification(accuracy_alert("iris", "3"), NotificationKind.FIRING, 1)])

    assert inbox.envelopes == [("watcher@example.org", ["ops@example.org", "ml@example.org"])]
    (message,) = inbox.messages
    assert message["Subject"] == "[FIRING] ModelAccuracyLow iris v3"
    assert message.get_content_type() == "text/plain"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    for fact in (
        "FIRING: ModelAccuracyLow",
        "iris v3 live accuracy below threshold",
        "model: iris",
        "version: 3",
        f"started: {T0.isoformat()}",
        "runbook: https://runbooks.example/accuracy",
        f"fingerprint: {accuracy_alert('iris', '3').fingerprint}",
    ):
        assert fact in text


def test_starttls_with_auth(starttls_smtp: tuple[Inbox, int], tls: Tls) -> None:
    """STARTTLS upgrade, then AUTH, then a resolved mail is accepted."""
    inbox, port = starttls_smtp
    notifier = EmailNotifier(
        host="127.0.0.1",
        port=port,
        security="starttls",
        username="watcher",
        password=PASSWORD,
        from_addr="watcher@example.org",
        to_addrs=["ops@example.org"],
        ssl_context=tls.client,
    )
    ended = accuracy_alert().resolved(T0 + dt.timedelta(hours=2))
    notifier.send([Notification(ended, NotificationKind.RESOLVED, 2)])
    assert inbox.logins == ["watcher"]
    (message,) = inbox.messages
    assert message["Subject"] == "[RESOLVED] ModelAccuracyLow iris v3"


def test_wrong_password_is_notify_error_without_secret(
    starttls_smtp: tuple[Inbox, int], tls: Tls
) -> None:
    """Rejected AUTH raises NotifyError; neither password appears in its text or repr."""
    inbox, port = starttls_smtp
    wrong = "wrong-pass-1a2b3c4d"
    notifier = EmailNotifier(
        host="127.0.0.1",
        port=port,
        username="watcher",
        password=wrong,
        from_addr="watcher@example.org",
        to_addrs=["ops@example.org"],
        ssl_context=tls.client,
    )
    with pytest.raises(NotifyError, match="SMTPAuthenticationError") as caught:
        notifier.send([Notification(accuracy_alert(), NotificationKind.FIRING, 1)])
    assert wrong not in str(caught.value)
    assert wrong not in repr(notifier)
    assert inbox.messages == []


def test_untrusted_certificate_is_refused(starttls_smtp: tuple[Inbox, int]) -> None:
    """With the default trust store a self-signed server certificate fails (no downgrade)."""
    _, port = starttls_smtp
    notifier = EmailNotifier(
        host="127.0.0.1",
        port=port,
        from_addr="watcher@example.org",
        to_addrs=["ops@example.org"],
    )
    with pytest.raises(NotifyError, match="SSLCertVerificationError"):
        notifier.send([Notification(accuracy_alert(), NotificationKind.FIRING, 1)])


def test_bad_configuration_is_rejected() -> None:
    """Constructor checks name the channel and the problem."""
    with pytest.raises(ValueError, match="'email': security must be starttls, ssl or none"):
        EmailNotifier(host="h", port=1, from_addr="a", to_addrs=["b"], security="tls")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="to_addrs is empty"):
        EmailNotifier(host="h", port=1, from_addr="a", to_addrs=[])


def test_implicit_tls(tls: Tls) -> None:
    """security="ssl" speaks TLS from the first byte (SMTPS)."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port(), ssl_context=tls.server)
    controller.start()
    try:
        notifier = EmailNotifier(
            host="127.0.0.1",
            port=controller.port,
            security="ssl",
            from_addr="watcher@example.org",
            to_addrs=["ops@example.org"],
            ssl_context=tls.client,
        )
        notifier.send([Notification(accuracy_alert(), NotificationKind.REPEAT, 2)])
    finally:
        controller.stop()
    (message,) = inbox.messages
    assert message["Subject"] == "[STILL FIRING] ModelAccuracyLow iris v3"
