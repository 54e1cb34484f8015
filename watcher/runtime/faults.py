"""Test-only crash injection: ``WATCHER_FAULT=<point>`` SIGKILLs the process at that point.

The crash tests use it to prove that a kill between two writes loses nothing and
duplicates nothing; unset (always, outside tests) every point is a no-op.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "WATCHER_FAULT"


def fault_point(name: str) -> None:
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
