"""structlog for our code and for stdlib loggers (mlflow, httpx, apscheduler, watchdog).

Console renderer on a TTY, JSON lines otherwise (journald). Every event passes a
redaction processor that replaces known secret values (and their encodings) wherever
they appear, with the registry of ``alerts.redaction``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
from collections.abc import Iterable, MutableMapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO

from alerts.redaction import redact, redact_data, register


def _import_structlog() -> ModuleType:
    """structlog without rich. ``import structlog`` imports ``structlog.dev``, which
    imports rich (~125 ms) only to offer rich tracebacks; we never use them (tracebacks
    become text in ``format_exc_info``, before redaction). Hiding an absent rich makes
    structlog fall back to its plain formatter; a rich imported later (``watcher
    status`` drawing its tables) is unaffected."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return importlib.import_module("structlog")
    sys.modules["rich"] = None  # type: ignore[assignment]  # import rich -> ImportError
    try:
        return importlib.import_module("structlog")
    finally:
        del sys.modules["rich"]


if TYPE_CHECKING:
    import structlog
    from structlog.typing import EventDict, Processor

# structlog (and the asyncio it imports) costs ~40 ms of start-up: a command that logs
# nothing (`status`, `history`, `hash`, `check-config`) never imports it. `configure()`
# sets up the stdlib side at once and structlog's own configuration when structlog is
# first needed (the first `get_logger()` or the first record to format).
_lock = threading.Lock()
_pending = False  # a configure() not yet given to structlog


def _structlog() -> ModuleType:
    """structlog, imported and configured as the last ``configure()`` asked."""
    global _pending  # noqa: PLW0603  (one process-wide configuration, as structlog's own)
    # import_module, not sys.modules: another thread may be importing structlog right now
    # (the demo's daemon thread), and only the import system waits for it to finish.
    module = _import_structlog()
    if _pending:
        with _lock:
            if _pending:
                _configure_structlog(module)
                _pending = False
    return module


# Third-party loggers that are chatty at INFO on every poll.
QUIET_LOGGERS = {
    "apscheduler.scheduler": logging.WARNING,
    "apscheduler.executors.default": logging.WARNING,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "watchdog": logging.WARNING,
    "urllib3": logging.ERROR,  # retry warnings: outages are reported by our own code
    "alembic": logging.WARNING,
    "mlflow": logging.WARNING,
    "uvicorn": logging.WARNING,  # the HTTP endpoint: start/stop chatter, no access log
}


def register_secrets(values: Iterable[str]) -> None:
    """Values that must never reach a log line, a stored or a served string (any length;
    their encodings too): one registry, alerts.redaction's."""
    for value in values:
        if value:
            register(value, min_length=1)


def redact_text(text: str) -> str:
    return redact(text)


def redact_processor(_: Any, __: str, event_dict: EventDict) -> EventDict:
    for key, value in list(event_dict.items()):
        event_dict[key] = redact_data(value)
    return event_dict


def _drop_color_message(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> EventDict:
    event_dict.pop("color_message", None)
    return dict(event_dict)


def _shared(structlog: ModuleType) -> list[Processor]:
    """The processors every event passes, ours and stdlib's alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_color_message,
        # Tracebacks become text here, before redaction: a renderer formatting them later
        # (rich, with frame locals) would print secrets the redaction never saw.
        structlog.processors.format_exc_info,
    ]


def _configure_structlog(structlog: ModuleType) -> None:
    structlog.configure(
        processors=[*_shared(structlog), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


class _Formatter(logging.Formatter):
    """structlog's ProcessorFormatter, built (structlog imported) at the first record."""

    def __init__(self, as_json: bool, colors: bool) -> None:
        super().__init__()
        self._as_json = as_json
        self._colors = colors
        self._real: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self._real is None:
            self._real = _processor_formatter(_structlog(), self._as_json, self._colors)
        return self._real.format(record)


def _processor_formatter(structlog: ModuleType, as_json: bool, colors: bool) -> logging.Formatter:
    renderer: Processor
    if as_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        # The plain formatter whether or not rich is installed: output does not depend
        # on which module imported structlog first.
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
    formatter: logging.Formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared(structlog),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_processor,
            renderer,
        ],
    )
    return formatter


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Configure structlog and route stdlib logging through the same renderer."""
    global _pending  # noqa: PLW0603
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    as_json, colors = fmt == "json", stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_Formatter(as_json, colors))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric)
    for name, quiet in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(quiet, numeric))
    with _lock:
        _pending = True
    if "structlog" in sys.modules:
        _structlog()  # already paid for: configure now, as before


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = _structlog().stdlib.get_logger(name)
    return logger
