"""Prompt stop: SIGTERM and SIGINT set one event; long work gives way to it.

The loop waits on the event, and long work on the main loop (the first hash of a big
tree) checks it between files and chunks. Work that cannot check — the imports and
first pass of start-up, a blocking MLflow call — runs inside :func:`interruptible`,
where the signal also raises :class:`Stopping` in the main thread, the way Ctrl-C
raises KeyboardInterrupt. Everything interrupted there is crash-safe by design (the
outbox, the rollback intents), so abandoning it is no worse than a SIGKILL, but the
process still stops components, records the stop and exits 0. Outside those regions a
signal only sets the event: cleanup is never interrupted. One process, one set of
signal handlers, hence module state.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

_event: threading.Event | None = None
_depth = 0  # nesting of interruptible() on the main thread


class Stopping(BaseException):
    """A stop was requested: abandon the work in hand. Like KeyboardInterrupt it is not an
    ``Exception``, so ``except Exception`` handlers (retries, error counters) let it pass."""


def install(event: threading.Event, on_signal: Callable[[str], None] | None = None) -> None:
    """SIGTERM and SIGINT set ``event`` (and call ``on_signal`` with the signal's name)."""
    global _event  # noqa: PLW0603  (the process's one signal disposition)
    _event = event

    def handler(signum: int, _frame: FrameType | None) -> None:
        event.set()
        if on_signal is not None:
            on_signal(signal.Signals(signum).name)
        if _depth > 0:
            raise Stopping(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def check(event: threading.Event | None = None) -> None:
    """Raise Stopping if a stop was requested (``event``, default: the installed one)."""
    ev = event if event is not None else _event
    if ev is not None and ev.is_set():
        raise Stopping


@contextlib.contextmanager
def interruptible(event: threading.Event | None = None) -> Iterator[None]:
    """A region of the main thread that a stop signal interrupts by raising Stopping.

    Also raises on entry when the stop was already requested. On other threads it only
    checks on entry: signals are handled on the main thread.
    """
    global _depth  # noqa: PLW0603
    check(event)
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
