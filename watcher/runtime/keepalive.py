"""Proof of life from inside long work on the main loop.

systemd kills a service that misses ``WatchdogSec``. The loop pings between ticks, but
one tick can legitimately take minutes: the first hash of a 200 GB dataset, or freezing
its snapshot. Such loops call :func:`beat`, which the running daemon points at its own
rate-limited watchdog ping; a stuck loop still stops pinging. One process, one watchdog,
hence one module-level hook.
"""

from __future__ import annotations

from collections.abc import Callable

_beat: Callable[[], None] | None = None


def install(fn: Callable[[], None] | None) -> None:
    """The daemon's ping while it runs; None when it stops."""
    global _beat  # noqa: PLW0603  (the process's one watchdog)
    _beat = fn


def beat() -> None:
    """Progress is being made: ping the watchdog if a ping is due."""
    if _beat is not None:
        _beat()
