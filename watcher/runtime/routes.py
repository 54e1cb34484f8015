"""Write endpoints on the daemon's HTTP side, framework-free.

A feature (the MLflow webhook receiver, the accuracy intake) offers :class:`Route` objects;
``runtime.http`` owns the server, its limits and timeouts, and maps each request to
``Route.handle``. Handlers run on an HTTP worker thread, never on the main loop: they touch
only what they own (their own state-DB connection, a thread-safe queue) and hand work to the
main loop through it, so no component needs to be thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

DEFAULT_MAX_BODY = 64 * 1024  # bytes; a JSON report or an MLflow webhook payload is far less


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str  # without the query string
    headers: Mapping[str, str]  # names in lower case
    body: bytes
    client: str  # the peer's address, for log lines


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Mapping[str, Any]  # served as JSON
    headers: Mapping[str, str] = field(default_factory=dict)


class Route(Protocol):
    path: str
    methods: tuple[str, ...]  # e.g. ("POST",); other methods get 405
    max_body: int  # bytes; a longer body is refused with 413 before handle() runs

    def handle(self, request: Request) -> Reply:
        """Answer one request (on an HTTP worker thread). Never raises for bad input:
        a 4xx reply naming the field; an unexpected exception is a 500 and a log line."""
        ...


def error(status: int, message: str, **detail: Any) -> Reply:
    """The one shape of an error reply: ``{"error": message, ...}``."""
    return Reply(status, {"error": message, **detail})
