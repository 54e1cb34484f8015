"""Say it once per episode: a condition is reported when it starts or its cause changes."""

from __future__ import annotations

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
