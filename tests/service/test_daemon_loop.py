"""The main loop's sleep: capped at MAX_IDLE, cut short by a component's wake-up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from watcher.daemon import MAX_IDLE, Daemon, Health
from watcher.sdnotify import SystemdNotifier
from watcher.state import open_state
from watcher.testing import FakeClock


class _Producer:
    """Stands in for the monitor: "queues a result" (calls wake) during its first tick."""

    name = "producer"

    def __init__(self, clock: FakeClock, wake_on_first: bool) -> None:
        self.clock = clock
        self.wake_on_first = wake_on_first
        self.ticks: list[float] = []
        self.wake: Callable[[], None] | None = None
        self.daemon: Daemon | None = None

    def bind_wake(self, wake: Callable[[], None]) -> None:
        self.wake = wake

    def start(self) -> None: ...

    def tick(self) -> float | None:
        self.ticks.append(self.clock.monotonic())
        if len(self.ticks) == 2 and self.wake_on_first and self.wake is not None:
            self.wake()
        if len(self.ticks) == 3 and self.daemon is not None:
            self.daemon.stop()
        return None

    def health(self) -> Health:
        return Health(self.name, True)

    def stop(self) -> None: ...


@pytest.mark.parametrize(("wake", "gap"), [(True, 0.0), (False, MAX_IDLE)])
def test_a_wake_up_ends_the_sleep(tmp_path: Path, wake: bool, gap: float) -> None:
    """With a wake-up the next tick comes without sleeping; without one, after MAX_IDLE."""
    clock = FakeClock()
    producer = _Producer(clock, wake)
    state = open_state(tmp_path / "state")
    try:
        daemon = Daemon(state, [producer], clock=clock, notifier=SystemdNotifier(env={}))
        producer.daemon = daemon
        assert 0 == daemon.run()
    finally:
        state.close()
    # ticks: the one before READY, then two loop passes.
    assert 3 == len(producer.ticks)
    assert gap == producer.ticks[2] - producer.ticks[1]
