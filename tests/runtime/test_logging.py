"""Logging: JSON lines off a TTY, stdlib loggers routed, secrets redacted."""

from __future__ import annotations

import io
import json
import logging

from alerts.redaction import REDACTED
from watcher.runtime.logging import configure, get_logger, redact_text, register_secrets


def test_json_lines_and_stdlib_routing() -> None:
    """Our events and third-party stdlib logs both come out as JSON lines."""
    stream = io.StringIO()
    configure("info", "auto", stream)
    get_logger("watcher.test").info("hello", answer=42)
    logging.getLogger("somelib").warning("from stdlib")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["hello", "from stdlib"]
    assert lines[0]["answer"] == 42
    assert lines[1]["logger"] == "somelib"


def test_secrets_redacted_everywhere() -> None:
    """A registered secret is masked in event values and in stdlib messages."""
    stream = io.StringIO()
    configure("info", "json", stream)
    register_secrets(["tok-123-secret"])
    get_logger("x").info("auth", header="Bearer tok-123-secret", nested={"k": ["tok-123-secret"]})
    logging.getLogger("httpx").error("sent tok-123-secret")
    assert "tok-123-secret" not in stream.getvalue()
    assert REDACTED in stream.getvalue()
    assert redact_text("Bearer tok-123-secret") == f"Bearer {REDACTED}"


def test_chatty_loggers_quieted() -> None:
    """apscheduler's per-run INFO lines are dropped at the default level."""
    stream = io.StringIO()
    configure("info", "json", stream)
    logging.getLogger("apscheduler.executors.default").info('Running job "poll"')
    assert stream.getvalue() == ""


def test_console_tracebacks_are_redacted() -> None:
    """A traceback is rendered as text before redaction, in console format too (rich used
    to print it, with its frame locals, after the redaction had run)."""
    stream = io.StringIO()
    configure("info", "console", stream)
    register_secrets(["TopS3cretValue-1"])
    try:
        raise RuntimeError("auth failed for TopS3cretValue-1")
    except RuntimeError:
        get_logger("x").exception("boom")
    assert "TopS3cretValue-1" not in stream.getvalue()
    assert "RuntimeError" in stream.getvalue()
