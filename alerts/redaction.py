"""Keep secrets (webhook URLs, passwords, HMAC keys) out of reprs, exceptions and logs.

Notifiers wrap every secret they receive in :class:`Secret` and register it, so the
redaction filter installed on third-party loggers (httpx logs every request URL at
INFO, and a Slack URL *is* a credential) can scrub it from any record.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from typing import Any, Final
from urllib.parse import quote, quote_plus, urlsplit

REDACTED: Final = "***"
# Shorter base64 fragments of a secret would match unrelated base64 text.
_MIN_BASE64: Final = 8

_lock = threading.Lock()
_known: set[str] = set()
_longest_first: tuple[str, ...] = ()  # _known, so prefixes of a longer secret don't leak
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


def register(value: str, *, min_length: int = 6) -> None:
    """Remember ``value`` and its encodings so :func:`redact` and the log filter scrub it.
    Below ``min_length`` nothing is registered: short strings would redact ordinary words
    (derived URL parts); a configured secret passes ``min_length=1``."""
    global _longest_first  # noqa: PLW0603  (rebuilt under the lock, read without it)
    if len(value) >= max(min_length, 1):
        variants = encodings(value)
        with _lock:
            _known.update(variants)
            _longest_first = tuple(sorted(_known, key=len, reverse=True))
    _install_filter()


def encodings(value: str) -> set[str]:
    """``value`` as a server may echo it back: raw, JSON- and Python-escaped, URL-encoded,
    and base64 — also inside a longer base64 text (``user:password`` in a Basic header,
    a whole request body), at each of its 3 alignments."""
    found = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
    }
    raw = value.encode("utf-8", "surrogatepass")
    for offset in range(3):
        # Encoded after ``offset`` other bytes, the 4-char groups made of secret bytes only.
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = 4 if offset else 0
        stop = (offset + len(raw)) // 3 * 4
        chunk = encoded[start:stop]
        if len(chunk) >= _MIN_BASE64:
            found.update({chunk, chunk.replace("+", "-").replace("/", "_")})
    found.add(base64.b64encode(raw).decode().rstrip("="))
    return {f for f in found if f}


def redact(text: str) -> str:
    """Replace every registered secret in ``text`` (longest first, so prefixes don't leak)."""
    for value in _longest_first:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_data(value: Any) -> Any:
    """:func:`redact` applied to every string inside dicts, lists and exceptions."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    if isinstance(value, BaseException):
        return redact(str(value))
    return value


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
