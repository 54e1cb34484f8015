"""Observation sources combined (monitor/sources.py) and a source's outage in the monitor
(monitor/outage.py), on fakes and a fake clock; the real Prometheus is in test_prometheus.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from structlog.testing import capture_logs

from tests.monitor.conftest import Channels
from tests.monitor.test_monitor import MODEL, cycle, make_monitor
from watcher.errors import ObservationsUnavailable, RegistryUnavailable
from watcher.monitor.accuracy import ACCURACY_ALERT
from watcher.monitor.outage import OBSERVATIONS_DOWN_ALERT
from watcher.monitor.policy import Status
from watcher.monitor.poll import Monitor
from watcher.monitor.sources import Combined, SourcesUnavailable, unavailable
from watcher.runtime.state import StateStore
from watcher.testing import FakeClock, FakeRegistry, MemoryObservations


@pytest.fixture
def registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.create_version(MODEL)
    reg.create_version(MODEL)
    reg.set_production(MODEL, "1")
    return reg


class TestCombined:
    def test_merges_every_source_oldest_first(self, clock: FakeClock) -> None:
        a, b = MemoryObservations("a"), MemoryObservations("b")
        a.add("m", "1", 0.9, 10, clock.now() + timedelta(seconds=5))
        b.add("m", "1", 0.8, 20, clock.now())
        got = Combined([a, b]).observations([("m", "1"), ("m", "2")])
        assert [0.8, 0.9] == [o.value for o in got[("m", "1")]]
        assert [] == got[("m", "2")]

    def test_one_source_down_gives_up_all_after_reading_the_others(self) -> None:
        a, b, c = MemoryObservations("a"), MemoryObservations("prometheus"), MemoryObservations()
        b.down = "connection refused"
        with pytest.raises(ObservationsUnavailable) as info:
            Combined([a, b, c]).observations([("m", "1")])
        assert 1 == a.reads == c.reads  # the others were still read (an MLflow error shows)
        assert {"prometheus": "connection refused"} == unavailable(info.value)

    def test_several_down_are_named_each(self) -> None:
        a, b = MemoryObservations("a"), MemoryObservations("b")
        a.down, b.down = "timeout", "HTTP 503"
        with pytest.raises(SourcesUnavailable) as info:
            Combined([a, b]).observations([("m", "1")])
        assert {"a": "timeout", "b": "HTTP 503"} == unavailable(info.value)
        assert "a, b: a: timeout; b: HTTP 503" == str(info.value)

    def test_an_mlflow_failure_is_not_an_observation_outage(self) -> None:
        class Mlflow:
            def observations(self, wanted: object) -> dict[tuple[str, str], list[object]]:
                raise RegistryUnavailable("MLflow down")

        with pytest.raises(RegistryUnavailable):
            Combined([MemoryObservations(), Mlflow()]).observations([("m", "1")])  # type: ignore[list-item]


def test_source_outage_neither_fires_nor_resolves_and_alerts_after_the_grace(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """Firing before the outage: still firing (no evidence of recovery), although the
    registry poll goes on (a promotion during the outage is seen); the source's alert
    after prometheus.down_alert_after; one log line each way."""
    source = MemoryObservations("prometheus")
    source.add(MODEL, "1", 0.5, 500, clock.now())
    mon = make_monitor(state, clock, channels, registry, source, **{"for": 0})
    cycle(mon, channels, clock)
    assert Status.FIRING == mon.verdicts()[MODEL].status
    source.down = "cannot reach http://prom:9090: ConnectError"
    source.data.clear()
    source.add(MODEL, "1", 0.99, 500, clock.now())  # would resolve it, if it could be read
    with capture_logs() as logs:
        for _ in range(4):  # down 360 s at the last: past the 5 min grace
            clock.advance(120)
            cycle(mon, channels, clock)
    assert 1 == len([e for e in logs if e["event"] == "observations_unreachable"])
    assert Status.FIRING == mon.verdicts()[MODEL].status
    assert ["firing"] == channels.sent("ops", ACCURACY_ALERT)
    assert ["firing"] == channels.sent("ops", OBSERVATIONS_DOWN_ALERT)
    detail = mon.health().detail
    assert detail["mlflow_reachable"] is True and detail["observations_reachable"] is False
    assert "prometheus: cannot reach http://prom:9090: ConnectError" == detail["observations_error"]
    assert not mon.health().ready

    registry.set_production(MODEL, "2")  # seen during the outage: a fresh, blind state
    clock.advance(30)
    cycle(mon, channels, clock)
    assert ("2", Status.INCONCLUSIVE) == (
        mon.verdicts()[MODEL].state.version,
        mon.verdicts()[MODEL].status,
    )
    assert 1 == len(state.events(kinds=["registry.production_changed"]))

    source.down = None
    with capture_logs() as logs:
        clock.advance(30)
        cycle(mon, channels, clock)
    assert 1 == len([e for e in logs if e["event"] == "observations_reachable_again"])
    assert ["firing", "resolved"] == channels.sent("ops", OBSERVATIONS_DOWN_ALERT)
    (back,) = state.events(kinds=["monitor.observations_reachable"])
    assert 420.0 == back.payload["outage_seconds"]
    assert "prometheus" == back.payload["source"]


def test_short_source_outage_is_not_alerted_and_a_pending_breach_does_not_fire(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """Pending (for = 5m) when the source goes away: `for` elapses during the outage but
    nothing fires on missing data."""
    source = MemoryObservations("prometheus")
    source.add(MODEL, "1", 0.5, 500, clock.now())
    mon = make_monitor(state, clock, channels, registry, source)
    cycle(mon, channels, clock)
    assert Status.PENDING == mon.verdicts()[MODEL].status
    source.down = "timeout"
    for _ in range(2):
        clock.advance(200)
        cycle(mon, channels, clock)
    assert Status.INCONCLUSIVE == mon.verdicts()[MODEL].status
    assert [] == channels.sent("ops", ACCURACY_ALERT)
    assert [] == channels.sent("ops", OBSERVATIONS_DOWN_ALERT)  # down 200 s < 5 min
    source.down = None
    clock.advance(30)
    cycle(mon, channels, clock)
    assert Status.PENDING == mon.verdicts()[MODEL].status  # the breach seen again: from now
    assert [] == channels.sent("ops", OBSERVATIONS_DOWN_ALERT)
    kinds = [e.kind for e in state.events() if "observations" in e.kind]
    assert ["monitor.observations_unreachable", "monitor.observations_reachable"] == kinds


def test_a_restart_mid_outage_resolves_the_alert_when_the_source_answers(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """The daemon names its sources (app.build_monitor): the first poll of a restarted
    monitor that reads them resolves the alert left firing, without a failure first."""
    source = MemoryObservations("prometheus")
    mon = make_monitor(state, clock, channels, registry, source)
    source.down = "timeout"
    for _ in range(4):
        clock.advance(120)
        cycle(mon, channels, clock)
    assert ["firing"] == channels.sent("ops", OBSERVATIONS_DOWN_ALERT)
    source.down = None
    restarted = Monitor(
        mon.config,
        state,
        registry,
        source,
        channels.alerting,
        clock=clock,
        use_scheduler=False,
        observation_sources=["prometheus"],
    )
    restarted.start()
    assert restarted.health().detail["observations_reachable"] is False  # not read yet
    clock.advance(30)
    cycle(restarted, channels, clock)
    assert ["firing", "resolved"] == channels.sent("ops", OBSERVATIONS_DOWN_ALERT)
    assert restarted.health().detail["observations_reachable"] is True


def test_partial_evidence_may_fire_but_never_resolve(
    state: StateStore, clock: FakeClock, channels: Channels, registry: FakeRegistry
) -> None:
    """Prometheus down: an intake report of a breach still fires (its source answered), a
    good one from the sources that answer never resolves it; Prometheus back, it does."""
    intake, prom = MemoryObservations("intake"), MemoryObservations("prometheus")
    prom.down = "connection refused"
    intake.add(MODEL, "1", 0.5, 500, clock.now())
    mon = make_monitor(state, clock, channels, registry, Combined([intake, prom]), **{"for": 0})
    cycle(mon, channels, clock)
    assert Status.FIRING == mon.verdicts()[MODEL].status
    intake.data.clear()
    clock.advance(30)
    intake.add(MODEL, "1", 0.99, 500, clock.now())
    cycle(mon, channels, clock)
    assert Status.FIRING == mon.verdicts()[MODEL].status  # partial: no recovery
    prom.down = None
    clock.advance(30)
    cycle(mon, channels, clock)
    assert mon.verdicts()[MODEL].status in (Status.RESOLVED, Status.OK)
