"""Shared helpers for alerts tests: a real local HTTP receiver and alert factories."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerts import Alert, AlertStore, ensure_schema, make_alert

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def accuracy_alert(model: str = "iris", version: str = "3", **labels: str) -> Alert:
    return make_alert(
        "ModelAccuracyLow",
        starts_at=T0,
        severity=labels.pop("severity", "critical"),
        summary=f"{model} v{version} live accuracy below threshold",
        description="accuracy 0.71 < 0.85 over the last 5 observations",
        runbook_url="https://runbooks.example/accuracy",
        model=model,
        version=version,
        **labels,
    )


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1; answers with ``statuses`` in turn, then 200."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    echo_path: bool = False  # error bodies quote the request path, as some servers do
    requests: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if self.statuses else 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            status = state.next_status()
            with state.lock:
                state.requests.append(Recorded(self.path, dict(self.headers.items()), body))
            reply = b"ok" if status < 400 else b"boom"
            if status >= 400 and state.echo_path:
                reply = f"no such hook: {self.path}".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    ensure_schema(connection)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def store(conn: sqlite3.Connection) -> AlertStore:
    return AlertStore(conn)
