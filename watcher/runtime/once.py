"""Say it once per episode: a condition is reported when it starts or its cause changes."""

from __future__ import annotations

import threading
from collections.abc import Hashable


class OncePerCause:
    """The cause of an ongoing condition, so logs and events are not repeated every tick.

    ``first(cause)`` is true when the condition starts or its cause changes (report it
    then); ``clear()`` is true when a condition was ongoing (report the recovery then).
    """

    __slots__ = ("_cause",)

    def __init__(self) -> None:
        self._cause: Hashable | None = None

    @property
    def active(self) -> bool:
        return self._cause is not None

    @property
    def cause(self) -> Hashable | None:
        return self._cause

    def first(self, cause: Hashable = True) -> bool:
        if cause == self._cause:
            return False
        self._cause = cause
        return True

    def clear(self) -> bool:
        was, self._cause = self._cause is not None, None
        return was


class Throttle:
    """Count events, say so at most every ``every`` seconds (thread-safe): a client
    flooding refused requests must not flood the journal."""

    def __init__(self, every: float) -> None:
        self.every = every
        self._count = 0
        self._said_at = -every
        self._lock = threading.Lock()

    def hit(self, now: float) -> int | None:
        """Count one; how many since it last said so when it is time to say so, else None."""
        with self._lock:
            self._count += 1
            if now - self._said_at < self.every:
                return None
            count, self._count, self._said_at = self._count, 0, now
            return count
