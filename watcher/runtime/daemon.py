"""The daemon loop: components do one pass in ``tick()``; ``run()`` loops until stopped.

Components own their I/O (watching files, polling the registry, delivering
alerts). The loop gives each a turn, reports health to systemd and the state
DB, and stops them in reverse order. Signals set the stop event; during start-up they
also interrupt it (watcher/runtime/stopping.py).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Sequence

from watcher.errors import StateError
from watcher.runtime import keepalive, stopping
from watcher.runtime.clock import Clock, SystemClock
from watcher.runtime.component import Component, Health
from watcher.runtime.logging import get_logger
from watcher.runtime.sdnotify import SystemdNotifier
from watcher.runtime.state import HEARTBEAT_EVERY, META_HEARTBEAT, StateStore, iso

log = get_logger("watcher.runtime.daemon")

MAX_IDLE = 1.0
# Before READY=1 systemd applies TimeoutStartSec, not the watchdog: a long first hash
# asks for this much more start time, this often.
EXTEND_START_USEC = 60_000_000
EXTEND_START_EVERY = 20.0
# READY=1 waits for components still warming up (the registry monitor's first poll
# attempt, with its `import mlflow`), at most this long: a registry that hangs is an
# outage, handled as one after READY, not a start-up that never ends.
WARM_UP_MAX = 60.0


class Daemon:
    """The main loop. A component that produces results on another thread may define
    ``bind_wake(wake)`` and call ``wake()`` when it has queued one: the loop then ticks at
    once instead of at the end of its sleep. One that does long work in a tick may define
    ``bind_stop(event)`` and raise :class:`~watcher.runtime.stopping.Stopping` once it is set.
    One whose first pass runs on another thread may define ``warming_up()``: READY=1 waits
    (up to ``warm_up_max``) until it returns false, the loop ticking meanwhile."""

    def __init__(
        self,
        state: StateStore,
        components: Sequence[Component],
        *,
        clock: Clock | None = None,
        notifier: SystemdNotifier | None = None,
        stop: threading.Event | None = None,
        warm_up_max: float = WARM_UP_MAX,
    ) -> None:
        self.state = state
        self.warm_up_max = warm_up_max
        self.components = list(components)
        self.clock = clock or SystemClock()
        self.sd = notifier or SystemdNotifier()
        self.stop_event = stop or threading.Event()
        self.wake = threading.Event()
        for comp in self.components:
            bind = getattr(comp, "bind_wake", None)
            if bind is not None:
                bind(self.wake.set)
            bind_stop = getattr(comp, "bind_stop", None)
            if bind_stop is not None:
                bind_stop(self.stop_event)
        self._last_heartbeat = -HEARTBEAT_EVERY
        self._next_ping = -1e9
        self._last_status = ""
        self._ready = False
        self._next_extend = -1e9

    def tick(self) -> float:
        """One pass over every component; returns how long the loop may sleep."""
        wait = MAX_IDLE
        for comp in self.components:
            try:
                nxt = comp.tick()
            except Exception as exc:
                # One broken component must not take the daemon down; health shows it.
                log.exception("component_failed", component=comp.name, error=str(exc))
                nxt = None
            if nxt is not None:
                wait = min(wait, max(0.0, nxt))
        return wait

    def health(self) -> list[Health]:
        out = []
        for c in self.components:
            try:
                out.append(c.health())
            except Exception as exc:
                # A health check that raises is a failing check, not a dead daemon.
                out.append(Health(c.name, False, {"error": f"health raised {type(exc).__name__}"}))
        return out

    def healthy(self) -> bool:
        return all(h.ok for h in self.health())

    def _heartbeat(self) -> None:
        now = self.clock.monotonic()
        interval = self.sd.watchdog_interval
        health = self.health()
        failing = [h.name for h in health if not h.ok]
        # Only a healthy loop pings: a stuck or broken daemon gets restarted by systemd.
        if interval is not None and now >= self._next_ping:
            self._next_ping = now + interval
            if not failing:
                self.sd.watchdog()
        status = "unhealthy: " + ", ".join(failing) if failing else "healthy"
        if status != self._last_status:
            # systemctl status shows the latest STATUS= line; send it only on change.
            self._last_status = status
            self.sd.status(status)
            if failing:
                log.warning("unhealthy", failing=failing)
        if now - self._last_heartbeat >= HEARTBEAT_EVERY:
            self._last_heartbeat = now
            checks = {h.name: {"ok": h.ok, **h.detail} for h in health}
            doc = {"pid": os.getpid(), "at": iso(self.clock.now()), "checks": checks}
            try:
                self.state.set_meta(META_HEARTBEAT, json.dumps(doc, default=str))
            except StateError as exc:
                # A briefly locked or full disk must not kill the loop; status shows staleness.
                log.warning("heartbeat_not_saved", error=str(exc))

    def keepalive(self) -> None:
        """Ping from inside a long tick (see watcher/runtime/keepalive.py), at the usual rate."""
        interval = self.sd.watchdog_interval
        now = self.clock.monotonic()
        if not self._ready:
            if now >= self._next_extend:
                self._next_extend = now + EXTEND_START_EVERY
                self.sd.notify(f"EXTEND_TIMEOUT_USEC={EXTEND_START_USEC}")
            return
        if interval is not None and now >= self._next_ping:
            self._next_ping = now + interval
            self.sd.watchdog()

    def _until_ping(self) -> float | None:
        """Seconds until the next watchdog ping is due (None: no watchdog)."""
        interval = self.sd.watchdog_interval
        if interval is None:
            return None
        return max(0.0, self._next_ping - self.clock.monotonic())

    def _warming(self) -> list[str]:
        return [c.name for c in self.components if getattr(c, "warming_up", lambda: False)()]

    def _warm_up(self) -> None:
        """Tick until no component is warming up, so that READY=1 and ``ready`` mean the
        daemon works: the data side and HTTP run from the first tick, and the first
        registry poll attempt (success or outage) has been handled. Bounded by
        ``warm_up_max``; systemd's start timeout is extended meanwhile."""
        deadline = self.clock.monotonic() + self.warm_up_max
        while not self.stop_event.is_set() and (waiting := self._warming()):
            left = deadline - self.clock.monotonic()
            if left <= 0:
                log.warning(
                    "ready_while_warming_up",
                    components=waiting,
                    waited_seconds=self.warm_up_max,
                    hint="the first registry poll has not finished; it is handled when it does",
                )
                return
            self.keepalive()  # before READY=1: EXTEND_TIMEOUT_USEC, at its rate
            self.clock.wait(self.wake, min(MAX_IDLE, left))
            self.wake.clear()
            self.tick()

    def install_signal_handlers(self) -> None:
        def _on_signal(name: str) -> None:
            log.info("stop_requested", signal=name)
            self.wake.set()

        stopping.install(self.stop_event, _on_signal)
        # Config reload is restart-only: say so instead of dying on the default action.
        signal.signal(
            signal.SIGHUP,
            lambda *_: log.warning("sighup_ignored", hint="restart the service to reload config"),
        )

    def stop(self) -> None:
        """Ask the loop to stop (a ``stop`` event set directly is seen within MAX_IDLE)."""
        self.stop_event.set()
        self.wake.set()

    def run(self) -> int:
        """Start, say READY, loop until stopped; 0 also when stopped during start-up."""
        started = time.monotonic()
        running: list[Component] = []
        # A state DB that takes no writes (read-only file or mount) fails here, naming the
        # file, rather than in every tick after READY.
        self.state.check_writable()
        keepalive.install(self.keepalive)
        try:
            # Start-up (imports, the first hash, the first delivery) can take long and cannot
            # always check the event: a stop signal interrupts it. It never says READY.
            with stopping.interruptible(self.stop_event):
                for comp in self.components:
                    stopping.check(self.stop_event)
                    comp.start()
                    # Only started components are stopped: a failed start must still let
                    # the earlier ones (and their non-daemon threads) shut down.
                    running.append(comp)
                self.tick()  # the first reconcile happens before READY=1
            self._warm_up()
            stopping.check(self.stop_event)
            status = "watching; " + ", ".join(c.name for c in self.components)
            self.sd.ready(status)
            self._ready = True
            log.info(
                "ready",
                components=[c.name for c in self.components],
                startup_seconds=round(time.monotonic() - started, 3),
            )
            self.state.record("daemon.started", f"watcher started (pid {os.getpid()})")
            while not self.stop_event.is_set():
                self._heartbeat()
                wait = self.tick()
                until_ping = self._until_ping()
                if until_ping is not None:
                    # Wake for the ping itself, not a full interval after an unrelated wake-up.
                    wait = min(wait, until_ping)
                self.clock.wait(self.wake, wait)
                self.wake.clear()
        except stopping.Stopping:
            log.info(
                "stopped_in_work", ready=self._ready, seconds=round(time.monotonic() - started, 3)
            )
        finally:
            keepalive.install(None)
            self.sd.stopping()
            log.info("stopping")
            for comp in reversed(running):
                try:
                    comp.stop()
                except Exception as exc:
                    log.exception("component_stop_failed", component=comp.name, error=str(exc))
            self.state.record("daemon.stopped", f"watcher stopped (pid {os.getpid()})")
            self.state.set_meta(
                META_HEARTBEAT,
                json.dumps({"pid": None, "at": iso(self.clock.now()), "stopped": True}),
            )
            log.info("stopped")
        return 0
