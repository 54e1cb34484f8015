"""Keep secrets (webhook URLs, passwords, HMAC keys) out of reprs, exceptions and logs.

Notifiers wrap every secret they receive in :class:`Secret` and register it, so the
redaction filter installed on third-party loggers (httpx logs every request URL at
INFO, and a Slack URL *is* a credential) can scrub it from any record.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Final
from urllib.parse import urlsplit

REDACTED: Final = "***"

_lock = threading.Lock()
_known: set[str] = set()
# Loggers of libraries we call that may print a URL or a server reply.
_FILTERED_LOGGERS: Final = ("httpx", "httpcore")


class Secret:
    """A string that never shows itself in ``repr``/``str``; call :meth:`reveal` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        register(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class SecretURL(Secret):
    """A URL whose path, query and token-like segments are secret too.

    Servers echo parts of a URL (``no such hook: /services/T0/B0/xyz``), so the
    full string is not enough to redact.
    """

    __slots__ = ()

    def __init__(self, value: str) -> None:
        super().__init__(value)
        for part in url_secret_parts(value):
            register(part)


def url_secret_parts(url: str) -> list[str]:
    """The pieces of ``url`` that can identify it: path+query, query, userinfo, tokens."""
    parts = urlsplit(url)
    found = [parts.path + (f"?{parts.query}" if parts.query else ""), parts.query]
    if parts.password:
        found.append(parts.password)
    for segment in re.split(r"[/?&=]", parts.path + "/" + parts.query):
        # Token-like: long, or mixing letters with digits (Slack's T0123ABCD ids).
        if len(segment) >= 20 or (len(segment) >= 8 and any(c.isdigit() for c in segment)):
            found.append(segment)
    return [f for f in found if len(f) > 1]


def register(value: str) -> None:
    """Remember ``value`` so :func:`redact` and the log filter scrub it."""
    # Very short strings would redact ordinary words; real secrets are longer.
    if len(value) >= 6:
        with _lock:
            _known.add(value)
    _install_filter()


def redact(text: str) -> str:
    """Replace every registered secret in ``text`` (longest first, so prefixes don't leak)."""
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's rendered message with secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


_filter = RedactingFilter()


def _install_filter() -> None:
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if _filter not in logger.filters:
            logger.addFilter(_filter)
