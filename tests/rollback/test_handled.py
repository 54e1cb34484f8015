"""Breach episodes automatic rollback leaves alone, across restarts (the fake registry; the
same story against a real `mlflow server` is in test_auto_rollback.py)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from watcher.config import MonitorConfig, RollbackConfig
from watcher.monitor.poll import Monitor
from watcher.ports import TAG_PREVIOUS
from watcher.rollback.auto import AutoRollback
from watcher.rollback.journal import Plan
from watcher.runtime.daemon import Daemon as Loop
from watcher.runtime.sdnotify import SystemdNotifier
from watcher.runtime.state import StateStore, open_state
from watcher.testing import FakeClock, FakeRegistry, MemoryObservations

MODEL = "m"


@dataclass
class Daemon:
    """The monitor and automatic rollback as `watcher run` builds them, on one state dir."""

    state: StateStore
    monitor: Monitor
    rollback: AutoRollback

    def cycle(self, clock: FakeClock) -> None:
        clock.advance(30)
        self.monitor.poll_once()
        self.monitor.tick()
        self.rollback.tick()

    def automatic(self) -> int:
        return len(self.rollback.rollbacker.automatic_times(MODEL))


def start(
    tmp_path: Path,
    registry: FakeRegistry,
    obs: MemoryObservations,
    clock: FakeClock,
    models: tuple[str, ...] = (MODEL,),
    **overrides: object,
) -> Daemon:
    state = open_state(tmp_path / "state")
    config = MonitorConfig.model_validate({"models": list(models), "window": 1, "min_samples": 10})
    monitor = Monitor(config, state, registry, obs, None, clock=clock, use_scheduler=False)
    monitor.start()
    guards = RollbackConfig.model_validate(
        {"auto": True, "cooldown": 0, "max_per_window": 10, **overrides}
    )
    rollback = AutoRollback(
        guards, config.policy_for, monitor, registry, state, tmp_path / "state", clock, None
    )
    rollback.start()
    return Daemon(state, monitor, rollback)


@pytest.fixture
def registry() -> FakeRegistry:
    reg = FakeRegistry()
    reg.create_version(MODEL, {"accuracy": "0.96"})
    reg.set_production(MODEL, "1")
    reg.create_version(MODEL, {"accuracy": "0.95", TAG_PREVIOUS: "1"})
    reg.set_production(MODEL, "2")
    return reg


def test_operator_choice_holds_across_restart_until_the_episode_ends(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    """Rolled back 2 → 1, undone by hand: v2 is left alone, also after a restart; once it
    stops breaching, a new breach rolls it back again (#13)."""
    clock, obs = FakeClock(), MemoryObservations()
    daemon = start(tmp_path, registry, obs, clock)
    obs.add(MODEL, "2", 0.5, 100, clock.now())
    daemon.cycle(clock)
    assert "1" == registry.production(MODEL)
    daemon.rollback.rollbacker.execute(Plan(MODEL, "1", "2", "false alarm", "ops", undo=True))
    daemon.cycle(clock)
    daemon.state.close()

    daemon = start(tmp_path, registry, obs, clock)  # a restart: nothing kept in memory
    daemon.cycle(clock)
    daemon.cycle(clock)
    assert "2" == registry.production(MODEL)
    assert 1 == daemon.automatic()

    obs.add(MODEL, "2", 0.97, 100, clock.now())  # recovered: the episode ends
    daemon.cycle(clock)
    obs.add(MODEL, "2", 0.4, 100, clock.now())  # a new episode
    daemon.cycle(clock)
    assert "1" == registry.production(MODEL)
    assert 2 == daemon.automatic()
    daemon.state.close()


def test_operator_choice_without_a_breach_does_not_block_a_later_one(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    """A version put into Production by hand with no live data yet (inconclusive) is in no
    breach episode: when its accuracy breaches later, it is rolled back automatically."""
    registry.create_version(MODEL, {"accuracy": "0.97", TAG_PREVIOUS: "2"})
    registry.set_production(MODEL, "3")
    clock, obs = FakeClock(), MemoryObservations()
    daemon = start(tmp_path, registry, obs, clock)
    daemon.rollback.rollbacker.execute(Plan(MODEL, "3", "2", "by hand", "ops"))
    daemon.cycle(clock)  # v2 inconclusive: no live data yet
    obs.add(MODEL, "2", 0.4, 100, clock.now())
    daemon.cycle(clock)
    assert "1" == registry.production(MODEL)
    assert 1 == daemon.automatic()
    daemon.state.close()


def test_a_dry_run_or_a_refusal_does_not_block_a_real_rollback_after_a_restart(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    """A dry run changed nothing and a refusal followed the guards of their day: restarted
    with dry_run off and the refusal's cause fixed, the breach is rolled back (#13 review)."""
    clock, obs = FakeClock(), MemoryObservations()
    daemon = start(tmp_path, registry, obs, clock, dry_run=True)
    obs.add(MODEL, "2", 0.5, 100, clock.now())
    daemon.cycle(clock)
    daemon.cycle(clock)
    assert "2" == registry.production(MODEL), "dry run: nothing moved"
    daemon.state.close()

    registry.set_tags(MODEL, "1", {"accuracy": "0.5"})  # the target looks worse: refused
    daemon = start(tmp_path, registry, obs, clock)
    daemon.cycle(clock)
    assert "2" == registry.production(MODEL), "refused: the target is below the threshold"
    assert daemon.state.events(kinds=["rollback.refused"])
    daemon.state.close()

    registry.set_tags(MODEL, "1", {"accuracy": "0.96"})  # corrected by an operator
    daemon = start(tmp_path, registry, obs, clock)
    daemon.cycle(clock)
    assert "1" == registry.production(MODEL)
    assert 1 == daemon.automatic()
    daemon.state.close()


def test_rollback_ticking_before_the_monitor_acts_in_the_next_pass(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    """Correctness does not hang on the component order: with rollback ticking first, a
    new firing verdict wakes the loop, and the very next pass rolls back (#16)."""
    clock, obs = FakeClock(), MemoryObservations()
    daemon = start(tmp_path, registry, obs, clock)
    loop = Loop(
        daemon.state, [daemon.rollback, daemon.monitor], clock=clock, notifier=SystemdNotifier({})
    )
    obs.add(MODEL, "2", 0.5, 100, clock.now())
    daemon.monitor.poll_once()
    loop.wake.clear()  # the loop woke for the poll result
    loop.tick()
    assert "2" == registry.production(MODEL), "rollback ticked before the verdict existed"
    assert loop.wake.is_set(), "a new verdict asks for another pass at once"
    loop.wake.clear()
    loop.tick()
    assert "1" == registry.production(MODEL)
    loop.tick()
    assert not loop.wake.is_set(), "nothing new: no extra pass"
    daemon.state.close()


def test_verdicts_are_a_read_only_copy_of_frozen_decisions(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    """What rollback reads cannot be changed by it, nor changes under it (#16)."""
    clock, obs = FakeClock(), MemoryObservations()
    daemon = start(tmp_path, registry, obs, clock, auto=False)
    obs.add(MODEL, "2", 0.5, 100, clock.now())
    daemon.cycle(clock)
    seen = daemon.monitor.verdicts()
    assert seen[MODEL].firing
    with pytest.raises(TypeError):
        seen[MODEL] = seen[MODEL]  # type: ignore[index]
    with pytest.raises(FrozenInstanceError):
        seen[MODEL].reason = "edited"  # type: ignore[misc]
    obs.add(MODEL, "2", 0.99, 1000, clock.now())
    daemon.cycle(clock)
    assert not daemon.monitor.verdicts()[MODEL].firing
    assert seen[MODEL].firing, "an earlier view is a copy"
    daemon.state.close()


def test_a_deferred_rollback_is_logged_once_per_cause(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    """MLflow down while a breach fires: retried every tick, logged once, shown in health;
    done when MLflow is back (#16)."""
    clock, obs = FakeClock(), MemoryObservations()
    daemon = start(tmp_path, registry, obs, clock)
    obs.add(MODEL, "2", 0.5, 100, clock.now())
    daemon.monitor.poll_once()
    daemon.monitor.tick()
    registry.down = True
    with capture_logs() as logs:
        for _ in range(3):
            daemon.rollback.tick()
    assert 1 == [e["event"] for e in logs].count("rollback_deferred")
    assert "unreachable" in str(daemon.rollback.health().detail["last_error"])
    registry.down = False
    daemon.rollback.tick()
    assert "1" == registry.production(MODEL)
    daemon.state.close()


def test_each_model_and_each_kind_of_deferral_is_logged_once(
    tmp_path: Path, registry: FakeRegistry
) -> None:
    """Two breaching models deferred by one outage: one line each, not one for both (the
    second model's would be lost) nor one per tick (their causes alternating)."""
    registry.create_version("n", {"accuracy": "0.96"})
    registry.set_production("n", "1")
    registry.create_version("n", {"accuracy": "0.95", TAG_PREVIOUS: "1"})
    registry.set_production("n", "2")
    clock, obs = FakeClock(), MemoryObservations()
    daemon = start(tmp_path, registry, obs, clock, models=(MODEL, "n"))
    monitor, rollback = daemon.monitor, daemon.rollback
    for model in (MODEL, "n"):
        obs.add(model, "2", 0.5, 100, clock.now())
    monitor.poll_once()
    monitor.tick()
    registry.down = True
    with capture_logs() as logs:
        for _ in range(3):
            rollback.tick()
    deferred = [e["model"] for e in logs if e["event"] == "rollback_deferred"]
    assert [MODEL, "n"] == sorted(deferred)
    registry.down = False
    rollback.tick()
    assert "1" == registry.production(MODEL) == registry.production("n")
    daemon.state.close()
