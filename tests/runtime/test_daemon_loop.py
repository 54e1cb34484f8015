"""The main loop's sleep: capped at MAX_IDLE, cut short by a component's wake-up."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from watcher.runtime import keepalive
from watcher.runtime.component import Health
from watcher.runtime.daemon import MAX_IDLE, Daemon
from watcher.runtime.sdnotify import SystemdNotifier
from watcher.runtime.state import open_state
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


class _LongTicks:
    """Two long ticks saying they are alive every 0.1 (fake) s: 45 s before READY (a
    first hash), then 5 s in the loop."""

    name = "long"

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.daemon: Daemon | None = None
        self.ticks = 0

    def start(self) -> None: ...

    def tick(self) -> float | None:
        self.ticks += 1
        if self.ticks <= 2:
            for _ in range(450 if self.ticks == 1 else 50):
                self.clock.advance(0.1)
                keepalive.beat()
        elif self.daemon is not None:
            self.daemon.stop()
        return None

    def health(self) -> Health:
        return Health(self.name, True)

    def stop(self) -> None: ...


def test_long_ticks_keep_systemd_from_killing_the_service(tmp_path: Path) -> None:
    """A first hash of a huge dataset must not get the service killed: before READY the
    beats extend the start timeout (EXTEND_TIMEOUT_USEC every 20 s); after it they ping
    the watchdog at its rate (half of WATCHDOG_USEC), not more often."""
    clock = FakeClock()
    sd = SystemdNotifier(env={"WATCHDOG_USEC": "2000000"})  # ping every 1 s
    t0 = clock.monotonic()
    pings: list[float] = []
    extends: list[tuple[float, str]] = []

    def ping() -> bool:
        pings.append(round(clock.monotonic() - t0, 1))
        return True

    def notify(*lines: str) -> bool:
        extends.extend((round(clock.monotonic() - t0, 1), x) for x in lines if "EXTEND" in x)
        return True

    sd.watchdog = ping  # type: ignore[method-assign]
    sd.notify = notify  # type: ignore[method-assign]
    long = _LongTicks(clock)
    state = open_state(tmp_path / "state")
    try:
        daemon = Daemon(state, [long], clock=clock, notifier=sd)
        long.daemon = daemon
        assert 0 == daemon.run()
    finally:
        state.close()
    assert [0, 20, 40] == [round(at) for at, _ in extends]
    assert {"EXTEND_TIMEOUT_USEC=60000000"} == {line for _, line in extends}
    assert pings and pings[0] >= 45.0, "no watchdog ping before READY"
    during = [p for p in pings if p < 50.0]
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(during)]
    assert all(1.0 <= g <= 1.1 for g in gaps), gaps  # the 1 s rate, to the next 0.1 s beat
    assert len(during) >= 5
    keepalive.beat()  # the daemon has stopped: a no-op
    assert len(pings) == len([p for p in pings if p <= 51.0])


class _FirstPoll:
    """Stands in for the monitor: warming up until the tick that handles its first poll's
    result (``handled_at``; None: never); stops the daemon in its first tick after READY=1
    (or at tick ``stop_at``)."""

    name = "first-poll"

    def __init__(self, clock: FakeClock, handled_at: int | None, stop_at: int = 0) -> None:
        self.clock = clock
        self.handled_at = handled_at
        self.stop_at = stop_at
        self.ticks = 0
        self.events: list[str] = []
        self.daemon: Daemon | None = None

    def warming_up(self) -> bool:
        return self.handled_at is None or self.ticks < self.handled_at

    def start(self) -> None: ...

    def tick(self) -> float | None:
        self.ticks += 1
        self.events.append(f"tick {self.ticks}")
        if self.daemon is not None and ("READY=1" in self.events or self.ticks == self.stop_at):
            self.events.append(f"stopped at {self.clock.monotonic():g}")
            self.daemon.stop()
        return None

    def health(self) -> Health:
        return Health(self.name, True)

    def stop(self) -> None: ...


def _run_first_poll(tmp_path: Path, comp: _FirstPoll) -> list[str]:
    """Run the daemon with ``comp``; the events it saw, READY=1 and EXTEND lines included."""
    sd = SystemdNotifier(env={})

    def notify(*lines: str) -> bool:
        comp.events.extend(line for line in lines if line.startswith(("READY", "EXTEND")))
        return True

    sd.notify = notify  # type: ignore[method-assign]
    state = open_state(tmp_path / "state")
    try:
        daemon = Daemon(state, [comp], clock=comp.clock, notifier=sd, warm_up_max=30.0)
        comp.daemon = daemon
        assert 0 == daemon.run()
    finally:
        state.close()
    return comp.events


def test_ready_follows_the_first_poll(tmp_path: Path) -> None:
    """READY=1 waits, the loop ticking meanwhile, until the first poll's result has been
    handled (tick 3 here), extending systemd's start timeout while it waits."""
    events = _run_first_poll(tmp_path, _FirstPoll(FakeClock(), handled_at=3))
    assert ["tick 1", "EXTEND_TIMEOUT_USEC=60000000", "tick 2", "tick 3", "READY=1"] == events[:5]


def test_ready_after_a_bounded_wait_when_the_first_poll_hangs(tmp_path: Path) -> None:
    """A first poll that never ends (a registry that does not answer) delays READY=1 by
    warm_up_max (30 s here), not forever: the outage is handled after READY, as any other."""
    clock = FakeClock()
    t0 = clock.monotonic()
    events = _run_first_poll(tmp_path, _FirstPoll(clock, handled_at=None))
    assert 1 == events.count("READY=1")
    stopped = float(events[-1].removeprefix("stopped at "))
    assert 30.0 <= stopped - t0 <= 32.0, events


def test_a_stop_while_warming_up_never_says_ready(tmp_path: Path) -> None:
    comp = _FirstPoll(FakeClock(), handled_at=None, stop_at=2)
    events = _run_first_poll(tmp_path, comp)
    assert "READY=1" not in events
    assert 2 == comp.ticks
