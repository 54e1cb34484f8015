"""The main loop's sleep: capped at MAX_IDLE, cut short by a component's wake-up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from watcher import keepalive
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


class _LongTick:
    """A first tick that works for 5 (fake) seconds, saying it is alive every 0.1 s."""

    name = "long"

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.daemon: Daemon | None = None

    def start(self) -> None: ...

    def tick(self) -> float | None:
        if self.daemon is not None and not self.daemon.stop_event.is_set():
            for _ in range(50):
                self.clock.advance(0.1)
                keepalive.beat()
            self.daemon.stop()
        return None

    def health(self) -> Health:
        return Health(self.name, True)

    def stop(self) -> None: ...


def test_a_long_tick_keeps_the_systemd_watchdog_fed(tmp_path: Path) -> None:
    """A first hash of a huge dataset must not get the service killed: beats inside it
    ping at the watchdog rate (half of WATCHDOG_USEC), not more often."""
    clock = FakeClock()
    sd = SystemdNotifier(env={"WATCHDOG_USEC": "2000000"})  # ping every 1 s
    pings: list[float] = []
    t0 = clock.monotonic()

    def ping() -> bool:
        pings.append(clock.monotonic() - t0)
        return True

    sd.watchdog = ping  # type: ignore[method-assign]
    long = _LongTick(clock)
    state = open_state(tmp_path / "state")
    try:
        daemon = Daemon(state, [long], clock=clock, notifier=sd)
        long.daemon = daemon
        assert 0 == daemon.run()
    finally:
        state.close()
    # One ping per second of the 5 s tick (the first beat at 0.1 s), none in between.
    assert [0.1, 1.1, 2.1, 3.1, 4.1] == [round(p, 1) for p in pings]
    keepalive.beat()  # the daemon has stopped: a no-op
    assert 5 == len(pings)
