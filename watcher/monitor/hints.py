"""Models to read afresh, named by a webhook delivery or an intake report (monitor/poll.py
reads them on its poll thread)."""

from __future__ import annotations

import threading


class Hints:
    """Model names to read afresh, coalesced (a burst for one model is one read);
    thread-safe: HTTP threads put, the monitor drains."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._lock = threading.Lock()

    def put(self, name: str) -> None:
        with self._lock:
            self._names.add(name)

    def pending(self) -> bool:
        with self._lock:
            return bool(self._names)

    def drain(self) -> set[str]:
        with self._lock:
            names, self._names = self._names, set()
            return names
