"""The journaled rollback against the fake registry (both modes) and its recovery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher.config import load_config
from watcher.errors import RollbackRefused
from watcher.ports import TAG_PREVIOUS, RegistryMode
from watcher.rollback.auto import ACTOR
from watcher.rollback.journal import TAG_RESTORED_FROM, Plan, Rollbacker
from watcher.rollback.policy import prior_stable
from watcher.runtime.alerting import Alerting
from watcher.runtime.state import StateStore, open_state
from watcher.testing import FakeClock, FakeRegistry


@pytest.fixture(params=["alias", "stage"])
def registry(request: pytest.FixtureRequest) -> FakeRegistry:
    mode: RegistryMode = request.param
    reg = FakeRegistry(mode)
    reg.create_version("m", {"accuracy": "0.96"})
    reg.set_production("m", "1")
    reg.create_version("m", {"accuracy": "0.95", TAG_PREVIOUS: "1"})
    reg.set_production("m", "2")
    return reg


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = open_state(tmp_path)
    yield store
    store.close()


def make(registry: FakeRegistry, state: StateStore, tmp_path: Path) -> tuple[Rollbacker, Alerting]:
    cfg = load_config(env={"WATCHER_STATE__DIR": str(tmp_path), "WATCHER_ALERTS__LOG": "false"})
    clock = FakeClock()
    alerting = Alerting(cfg, state, clock)
    return Rollbacker(registry, state, clock, alerting), alerting


def deliveries(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "alerts.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


PLAN = Plan("m", "2", "1", "live accuracy 0.61 < 0.90", "watcher")


def test_rollback_moves_tags_and_notifies_once(
    registry: FakeRegistry, state: StateStore, tmp_path: Path
) -> None:
    """Production moves, the bad version is quarantined (archived in stage mode), one notice."""
    rollbacker, alerting = make(registry, state, tmp_path)
    outcome = rollbacker.execute(PLAN, automatic=True)
    alerting.tick()
    assert "1" == registry.production("m")
    bad = registry.get_version("m", "2")
    assert bad is not None and bad.quarantined
    assert "live accuracy 0.61 < 0.90" == bad.tags["watcher.rollback_reason"]
    assert "2" == registry.get_version("m", "1").tags[TAG_RESTORED_FROM]  # type: ignore[union-attr]
    if registry.mode == "stage":
        assert "Archived" == bad.stage
    assert [] == rollbacker.pending()
    assert ["rollback.started", "rollback.done"] == [e.kind for e in state.events()]
    assert 1 == len(deliveries(tmp_path))
    assert outcome.message.startswith("m: rolled back Production v2 → v1")
    assert 1 == len(rollbacker.automatic_times("m"))


def test_undo_returns_to_before_the_rollback_and_quarantines_nothing(
    registry: FakeRegistry, state: StateStore, tmp_path: Path
) -> None:
    """Undo of 2 → 1: v2 is Production and clean again, the healthy v1 is not quarantined,
    so the next rollback of v2 still finds v1 (#13)."""
    rollbacker, alerting = make(registry, state, tmp_path)
    rollbacker.execute(PLAN, automatic=True)
    rollbacker.execute(Plan("m", "1", "2", "false alarm", "ops@host", undo=True))
    alerting.tick()
    assert "2" == registry.production("m")
    for version in ("1", "2"):
        info = registry.get_version("m", version)
        assert info is not None and not info.quarantined, info
        assert "watcher.rollback_reason" not in info.tags
    assert TAG_RESTORED_FROM not in registry.get_version("m", "1").tags  # type: ignore[union-attr]
    undo_note = deliveries(tmp_path)[-1]["annotations"]
    assert isinstance(undo_note, dict)
    assert "nothing is quarantined" in undo_note["description"]
    assert "1" == prior_stable("2", lambda v: registry.get_version("m", v)).version


def test_dry_run_changes_nothing(registry: FakeRegistry, state: StateStore, tmp_path: Path) -> None:
    """A manual dry run is a preview: nothing recorded or notified. An automatic one
    (rollback.dry_run) records and notifies what it *would* do. Registry untouched (#13)."""
    rollbacker, alerting = make(registry, state, tmp_path)
    assert rollbacker.execute(PLAN, dry_run=True).message.startswith("m: would roll back")
    alerting.tick()
    assert [] == state.events()
    assert [] == deliveries(tmp_path)
    rollbacker.execute(Plan("m", "2", "1", "r", ACTOR), dry_run=True, automatic=True)
    alerting._next = 0.0  # deliver again at once (the fake clock does not move)
    alerting.tick()
    assert "2" == registry.production("m")
    assert not registry.get_version("m", "2").quarantined  # type: ignore[union-attr]
    assert ["rollback.dry_run"] == [e.kind for e in state.events()]
    [note] = deliveries(tmp_path)
    assert "ModelRollbackDryRun" == note["labels"]["alertname"]  # type: ignore[index]
    text = note["annotations"]["description"]  # type: ignore[index]
    assert "would move Production of m from v2 to v1" in text
    assert "v2 would be quarantined" in text
    assert " moved " not in text and "is quarantined" not in text


def test_automatic_actor_named_once(
    registry: FakeRegistry, state: StateStore, tmp_path: Path
) -> None:
    """The notice says "by registry-watcher (automatic)", not "(automatic) (automatic)"."""
    rollbacker, alerting = make(registry, state, tmp_path)
    rollbacker.execute(Plan("m", "2", "1", "r", ACTOR), automatic=True)
    alerting.tick()
    text = deliveries(tmp_path)[0]["annotations"]["description"]  # type: ignore[index]
    assert "by registry-watcher (automatic). Reason: r." in text
    assert 1 == text.count("(automatic)")


def test_same_version_refused(registry: FakeRegistry, state: StateStore, tmp_path: Path) -> None:
    """Rolling back onto the current version is refused."""
    rollbacker, _ = make(registry, state, tmp_path)
    with pytest.raises(RollbackRefused, match="already Production"):
        rollbacker.execute(Plan("m", "2", "2", "x", "me"))


@pytest.mark.parametrize("crashed_at", ["intent", "moved", "tagged"])
def test_recover_completes_each_step(
    registry: FakeRegistry, state: StateStore, tmp_path: Path, crashed_at: str
) -> None:
    """A journal row left at any step is completed by recover(), with exactly one notice."""
    rollbacker, alerting = make(registry, state, tmp_path)
    now = "2026-01-01T00:00:00+00:00"
    with state.transaction() as tx:
        tx.execute(
            "INSERT INTO rollback_journal (model, from_version, to_version, step, reason, actor,"
            " automatic, undo, started_at, updated_at) VALUES ('m','2','1',?,'r','w',1,0,?,?)",
            (crashed_at, now, now),
        )
    if crashed_at != "intent":
        registry.set_production("m", "1")  # the move had happened before the crash
    if crashed_at == "tagged":
        registry.set_tags("m", "2", {"watcher.quarantined": "true"})
    outcomes = rollbacker.recover()
    assert 1 == len(outcomes) and outcomes[0].recovered
    alerting.tick()
    assert "1" == registry.production("m")
    assert registry.get_version("m", "2").quarantined  # type: ignore[union-attr]
    assert [] == rollbacker.pending()
    assert [] == rollbacker.recover()
    assert 1 == len(deliveries(tmp_path))
