"""Monitor component with the in-memory registry, a fake clock and real alert channels."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.monitor.conftest import CHANNELS, Channels
from watcher.config import MonitorConfig
from watcher.monitor.accuracy import ACCURACY_ALERT
from watcher.monitor.policy import Status
from watcher.monitor.poll import MLFLOW_DOWN_ALERT, Monitor
from watcher.ports import ModelSnapshot, ObservationSource
from watcher.runtime.metrics import Metrics
from watcher.runtime.state import StateStore, open_state
from watcher.testing import FakeClock, FakeRegistry, MemoryObservations

MODEL = "iris-classifier"


def make_monitor(
    state: StateStore,
    clock: FakeClock,
    channels: Channels,
    registry: FakeRegistry,
    source: ObservationSource,
    **cfg: object,
) -> Monitor:
    settings: dict[str, object] = {
        "models": ["iris-*"],
        "min_accuracy": 0.9,
        "window": 2,
        "min_samples": 100,
        "for": "5m",
        "keep_firing_for": "0s",
        "mlflow_down_alert_after": "5m",
        **cfg,
    }
    mon = Monitor(
        # None: leave the default's key out (an rmse test drops min_accuracy).
        MonitorConfig.model_validate({k: v for k, v in settings.items() if v is not None}),
        state,
        registry,
        source,
        channels.alerting,
        clock=clock,
        use_scheduler=False,
        retry_delay=0.0,
    )
    mon.start()
    return mon


def cycle(mon: Monitor, channels: Channels, clock: FakeClock) -> None:
    """One poll + one daemon tick + one delivery pass."""
    mon.poll_once()
    mon.tick()
    channels.dispatcher.deliver_due(clock.now())


@pytest.fixture
def registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.create_version(MODEL)
    reg.create_version(MODEL)
    reg.set_production(MODEL, "1")
    return reg


def test_production_change_is_recorded_and_notified(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """A promotion becomes a history event and one info notification per channel."""
    mon = make_monitor(state, clock, channels, registry, MemoryObservations())
    cycle(mon, channels, clock)
    registry.create_version(MODEL)
    registry.set_production(MODEL, "3")
    cycle(mon, channels, clock)
    cycle(mon, channels, clock)  # nothing changed: nothing new
    kinds = [e.kind for e in state.events(model=MODEL)]
    assert [
        "registry.model_watched",
        "registry.version_created",
        "registry.production_changed",
    ] == kinds
    for ch in CHANNELS:
        assert [
            "iris-classifier v3 registered",
            "iris-classifier v3 is now Production (was v1)",
        ] == channels.summaries(ch)


def test_deleted_version_and_model_are_reported(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """Deleting a version (and the Production one) is an event; baseline survives restarts."""
    cycle(make_monitor(state, clock, channels, registry, MemoryObservations()), channels, clock)
    registry.delete_version(MODEL, "1")
    # A new Monitor (a restart) diffs against what the state DB remembers.
    mon = make_monitor(state, clock, channels, registry, MemoryObservations())
    cycle(mon, channels, clock)
    messages = [e.message for e in state.events(model=MODEL)][1:]
    assert [
        "iris-classifier v1 was deleted",
        "iris-classifier has no Production version (was v1)",
    ] == messages


def test_accuracy_lifecycle_ok_pending_firing_repeat_resolved(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """Breach → pending → firing after `for`; one firing per channel, one repeat, one resolved."""
    source = MemoryObservations()
    mon = make_monitor(state, clock, channels, registry, source)
    source.add(MODEL, "1", 0.97, 200, clock.now())
    cycle(mon, channels, clock)
    assert Status.OK == mon.verdicts()[MODEL].status

    clock.advance(60)
    source.add(MODEL, "1", 0.5, 400, clock.now())
    cycle(mon, channels, clock)
    assert Status.PENDING == mon.verdicts()[MODEL].status
    clock.advance(299)
    cycle(mon, channels, clock)
    assert Status.PENDING == mon.verdicts()[MODEL].status
    clock.advance(1)
    cycle(mon, channels, clock)
    assert Status.FIRING == mon.verdicts()[MODEL].status
    for _ in range(5):  # keeps firing: no new notification before repeat_interval
        clock.advance(600)
        cycle(mon, channels, clock)
    assert all(["firing"] == channels.sent(ch, ACCURACY_ALERT) for ch in CHANNELS)

    clock.advance(4 * 3600)
    cycle(mon, channels, clock)
    assert all(["firing", "repeat"] == channels.sent(ch, ACCURACY_ALERT) for ch in CHANNELS)

    source.add(MODEL, "1", 0.99, 1000, clock.now())
    source.add(MODEL, "1", 0.99, 1000, clock.now())
    cycle(mon, channels, clock)
    cycle(mon, channels, clock)
    assert Status.OK == mon.verdicts()[MODEL].status
    for ch in CHANNELS:
        assert ["firing", "repeat", "resolved"] == channels.sent(ch, ACCURACY_ALERT)
    kinds = [e.kind for e in state.events(model=MODEL) if e.kind.startswith("monitor.")]
    assert [
        "monitor.accuracy_pending",
        "monitor.accuracy_firing",
        "monitor.accuracy_resolved",
    ] == kinds


def test_pending_fires_on_time_without_a_new_poll(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """tick() alone re-evaluates when `for` elapses, and says how long until then."""
    source = MemoryObservations()
    mon = make_monitor(state, clock, channels, registry, source)
    source.add(MODEL, "1", 0.1, 500, clock.now())
    mon.poll_once()
    assert 300.0 == mon.tick()
    clock.advance(300)
    mon.tick()
    assert Status.FIRING == mon.verdicts()[MODEL].status


def test_below_min_samples_stays_inconclusive(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """Terrible accuracy on too few samples never alerts."""
    source = MemoryObservations()
    mon = make_monitor(state, clock, channels, registry, source)
    for _ in range(6):
        source.add(MODEL, "1", 0.1, 40, clock.now())
        clock.advance(600)
        cycle(mon, channels, clock)
        assert Status.INCONCLUSIVE == mon.verdicts()[MODEL].status
    assert [] == channels.sent("ops", ACCURACY_ALERT)


def test_new_production_version_starts_clean(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """v1's bad observations do not count against v2 once it is Production."""
    source = MemoryObservations()
    mon = make_monitor(state, clock, channels, registry, source, **{"for": 0})
    source.add(MODEL, "1", 0.1, 500, clock.now())
    cycle(mon, channels, clock)
    assert Status.FIRING == mon.verdicts()[MODEL].status
    registry.set_production(MODEL, "2")
    cycle(mon, channels, clock)
    decision = mon.verdicts()[MODEL]
    assert ("2", Status.INCONCLUSIVE) == (decision.state.version, decision.status)
    assert ["firing", "resolved"] == channels.sent("ops", ACCURACY_ALERT)


def test_policy_state_survives_restart(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """A restart keeps a firing alert firing: no spurious resolve and no second firing."""
    source = MemoryObservations()
    source.add(MODEL, "1", 0.1, 500, clock.now())
    mon = make_monitor(state, clock, channels, registry, source, **{"for": 0})
    cycle(mon, channels, clock)
    mon.stop()
    again = make_monitor(state, clock, channels, registry, source, **{"for": 0})
    clock.advance(60)
    cycle(again, channels, clock)
    assert Status.FIRING == again.verdicts()[MODEL].status
    assert ["firing"] == channels.sent("ops", ACCURACY_ALERT)


def test_gauges_restored_from_state_before_the_first_poll(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """A restarted monitor puts Production, the alert state and the live accuracy on
    /metrics at start, before any poll: not missing until something changes (#13)."""
    source = MemoryObservations()
    source.add(MODEL, "1", 0.25, 500, clock.now())
    mon = make_monitor(state, clock, channels, registry, source, **{"for": 0})
    cycle(mon, channels, clock)
    mon.stop()
    metrics = Metrics()
    config = MonitorConfig.model_validate({"models": ["iris-*"], "for": 0})
    restarted = Monitor(
        config, state, registry, source, None, clock=clock, metrics=metrics, use_scheduler=False
    )
    restarted.start()
    text = metrics.render().decode()
    assert f'watcher_production_version{{model="{MODEL}"}} 1.0' in text
    assert f'watcher_alert_state{{model="{MODEL}",state="firing"}} 1.0' in text
    assert f'watcher_live_accuracy{{model="{MODEL}"}} 0.25' in text
    polled = metrics.registry.get_sample_value(
        "watcher_last_successful_poll_timestamp_seconds", {"backend": "mlflow"}
    )
    assert clock.now().timestamp() == polled


def test_rmse_gauge_restored_from_state_before_the_first_poll(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """A model watched on rmse: its live value is restored on watcher_live_metric with its
    metric (the state DB keeps the metric with the value), not on the accuracy gauge (#19)."""
    source = MemoryObservations()
    source.add(MODEL, "1", 52.5, 500, clock.now(), metric="rmse")
    rmse = {"min_accuracy": None, "max_rmse": 40, "for": 0}
    mon = make_monitor(state, clock, channels, registry, source, **rmse)
    cycle(mon, channels, clock)
    assert Status.FIRING == mon.verdicts()[MODEL].status
    mon.stop()
    metrics = Metrics()
    config = MonitorConfig.model_validate({"models": ["iris-*"], "max_rmse": 40})
    restarted = Monitor(
        config, state, registry, source, None, clock=clock, metrics=metrics, use_scheduler=False
    )
    restarted.start()
    text = metrics.render().decode()
    assert f'watcher_live_metric{{metric="rmse",model="{MODEL}"}} 52.5' in text
    assert f'watcher_alert_state{{model="{MODEL}",state="firing"}} 1.0' in text
    assert "watcher_live_accuracy{" not in text


def test_a_rollback_by_hand_after_the_last_poll_shows_on_the_restored_gauge(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """`watcher rollback` moved Production after the daemon's last poll, then the daemon
    restarted: the first scrape shows where the rollback left it, not the stale poll."""
    from watcher.rollback.journal import JournalReader, Plan, Rollbacker

    mon = make_monitor(state, clock, channels, registry, MemoryObservations())
    cycle(mon, channels, clock)
    mon.stop()
    registry.create_version(MODEL, {"accuracy": "0.95"})
    clock.advance(5)
    Rollbacker(registry, state, clock, None).execute(Plan(MODEL, "1", "2", "by hand", "ops"))
    metrics = Metrics()
    config = MonitorConfig.model_validate({"models": ["iris-*"]})
    restarted = Monitor(
        config,
        state,
        registry,
        MemoryObservations(),
        None,
        clock=clock,
        metrics=metrics,
        moves=JournalReader(state),
        use_scheduler=False,
    )
    restarted.start()
    text = metrics.render().decode()
    assert f'watcher_production_version{{model="{MODEL}"}} 2.0' in text
    # v2 not evaluated yet: inconclusive until the first poll, and no other state set.
    assert f'watcher_alert_state{{model="{MODEL}",state="inconclusive"}} 1.0' in text
    assert f'watcher_alert_state{{model="{MODEL}",state="firing"}} 1.0' not in text


def test_outage_logged_once_alerted_after_threshold_and_recovered(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """Unreachable MLflow: one event per outage, alert after 5 min, resolved on return."""
    source = MemoryObservations()
    source.add(MODEL, "1", 0.1, 500, clock.now())
    mon = make_monitor(state, clock, channels, registry, source, **{"for": 0})
    cycle(mon, channels, clock)
    registry.down = True
    for _ in range(4):
        clock.advance(120)
        cycle(mon, channels, clock)
    health = mon.health()
    assert health.ok  # the daemon keeps running; the flag is in the detail
    assert health.detail["mlflow_reachable"] is False
    assert ["firing"] == channels.sent("ops", MLFLOW_DOWN_ALERT)
    # The accuracy alert is neither resolved nor re-fired while blind.
    assert ["firing"] == channels.sent("ops", ACCURACY_ALERT)
    registry.down = False
    clock.advance(30)
    cycle(mon, channels, clock)
    assert mon.health().detail["mlflow_reachable"] is True
    assert ["firing", "resolved"] == channels.sent("ops", MLFLOW_DOWN_ALERT)
    kinds = [e.kind for e in state.events() if e.kind.startswith("registry.")]
    assert ["registry.model_watched", "registry.unreachable", "registry.reachable"] == kinds
    reachable = state.events(kinds=["registry.reachable"])[0]
    assert 390.0 == reachable.payload["outage_seconds"]  # first failed poll → back


def test_short_outage_does_not_alert(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """An outage shorter than mlflow_down_alert_after is logged but never alerted."""
    mon = make_monitor(state, clock, channels, registry, MemoryObservations())
    cycle(mon, channels, clock)
    registry.down = True
    clock.advance(60)
    cycle(mon, channels, clock)
    registry.down = False
    clock.advance(60)
    cycle(mon, channels, clock)
    assert [] == channels.sent("ops", MLFLOW_DOWN_ALERT)


class _BlockingRegistry(FakeRegistry):
    """A registry whose reads wait for ``release``: a poll longer than poll_interval."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def snapshot(self, patterns: Sequence[str]) -> list[ModelSnapshot]:
        self.release.wait(120)
        return super().snapshot(patterns)


def test_poll_overrun_counted_and_logged_once_per_episode(
    state: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A poll stuck past several intervals: each skipped run is counted in a metric, one
    warning for the episode (not APScheduler's warning per skipped run), and one line
    when polls are quick again (#13)."""
    registry = _BlockingRegistry()
    registry.create_version(MODEL)
    metrics = Metrics()
    config = MonitorConfig.model_validate({"models": ["iris-*"], "poll_interval": 1})
    mon = Monitor(config, state, registry, None, None, metrics=metrics)

    def skipped() -> float:
        return metrics.registry.get_sample_value("watcher_poll_overruns_total") or 0.0

    caplog.set_level(logging.INFO)
    with capture_logs() as logs:
        mon.start()
        try:
            _wait(mon, lambda: skipped() >= 3, "3 skipped polls")
            registry.release.set()  # MLflow answers quickly again
            _wait(mon, lambda: any(e["event"] == "poll_overrun_ended" for e in logs), "the end")
        finally:
            mon.stop()
    events = [e["event"] for e in logs]
    assert 1 == events.count("poll_overrun"), events
    ended = next(e for e in logs if e["event"] == "poll_overrun_ended")
    assert 3 <= int(ended["skipped"]) <= skipped()
    assert "maximum number of running instances" not in caplog.text


def _wait(mon: Monitor, cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Tick the monitor as the daemon loop would until ``cond``."""
    deadline = time.monotonic() + timeout
    while True:
        mon.tick()
        if cond():
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_poll_cut_short_by_a_stop_is_not_an_error(tmp_path: Path) -> None:
    """SIGTERM during a poll raises Stopping inside the registry call (stopping.interruptible):
    the poll ends quietly, with no error recorded and nothing for APScheduler to log."""
    from watcher.runtime import stopping

    class StoppingRegistry(FakeRegistry):
        def snapshot(self, patterns: Sequence[str]) -> list[ModelSnapshot]:
            raise stopping.Stopping

    state = open_state(tmp_path / "state")
    config = MonitorConfig.model_validate({"models": ["m"]})
    monitor = Monitor(
        config, state, StoppingRegistry(), MemoryObservations(), None, use_scheduler=False
    )
    assert monitor.poll_once() is None
    state.close()
