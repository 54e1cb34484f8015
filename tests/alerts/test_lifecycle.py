"""Lifecycle decisions, table-tested: fire once, repeat after repeat_interval, resolve once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest

from alerts import (
    Alert,
    AlertState,
    AlertStatus,
    AlertValidationError,
    NotificationKind,
    evaluate,
)
from tests.alerts.conftest import T0, accuracy_alert

H = timedelta(hours=1)
A = accuracy_alert(version="3")
B = accuracy_alert(version="4")
F, R, RES = NotificationKind.FIRING, NotificationKind.REPEAT, NotificationKind.RESOLVED


@dataclass(frozen=True)
class Step:
    at: timedelta  # offset from T0
    active: tuple[Alert, ...]
    expected: tuple[tuple[str, NotificationKind, int], ...]  # (version, kind, sequence)


CASES: dict[str, list[Step]] = {
    "fires once, stays quiet": [
        Step(0 * H, (A,), (("3", F, 1),)),
        Step(1 * H, (A,), ()),
        Step(3 * H, (A,), ()),
    ],
    "repeats after 4h, then every 4h": [
        Step(0 * H, (A,), (("3", F, 1),)),
        Step(4 * H - timedelta(seconds=1), (A,), ()),
        Step(4 * H, (A,), (("3", R, 2),)),
        Step(6 * H, (A,), ()),
        Step(8 * H, (A,), (("3", R, 3),)),
    ],
    "resolves once": [
        Step(0 * H, (A,), (("3", F, 1),)),
        Step(1 * H, (), (("3", RES, 2),)),
        Step(2 * H, (), ()),
    ],
    "refires as a new episode": [
        Step(0 * H, (A,), (("3", F, 1),)),
        Step(1 * H, (), (("3", RES, 2),)),
        Step(2 * H, (A,), (("3", F, 3),)),
    ],
    "independent alerts": [
        Step(0 * H, (A,), (("3", F, 1),)),
        Step(1 * H, (A, B), (("4", F, 1),)),
        Step(2 * H, (B,), (("3", RES, 2),)),
        Step(5 * H, (B,), (("4", R, 2),)),
    ],
    "nothing active, nothing stored": [
        Step(0 * H, (), ()),
    ],
}


@pytest.mark.parametrize("steps", CASES.values(), ids=CASES.keys())
def test_lifecycle_table(steps: list[Step]) -> None:
    """Each step's notifications match the table; states carry over between steps."""
    states: dict[str, AlertState] = {}
    for step in steps:
        result = evaluate("policy", step.active, states, T0 + step.at)
        got = tuple((n.alert.labels["version"], n.kind, n.sequence) for n in result.notifications)
        assert got == step.expected, f"at +{step.at}"
        states.update({s.fingerprint: s for s in result.states})


def test_resolved_notification_carries_ends_at_and_original_start() -> None:
    """The resolve has ends_at = now and the episode's starts_at, even if re-sends moved it."""
    first = evaluate("policy", [A], {}, T0)
    later_copy = Alert(labels=dict(A.labels), starts_at=T0 + H, annotations={"summary": "new"})
    states = {s.fingerprint: s for s in first.states}
    second = evaluate("policy", [later_copy], states, T0 + 2 * H)
    assert second.notifications == ()
    (updated,) = second.states  # annotations changed: state updated without notifying
    assert updated.alert.starts_at == T0
    assert updated.alert.annotations["summary"] == "new"
    states[updated.fingerprint] = updated
    (resolved,) = evaluate("policy", [], states, T0 + 3 * H).notifications
    assert (resolved.alert.starts_at, resolved.alert.ends_at) == (T0, T0 + 3 * H)
    assert resolved.alert.annotations["summary"] == "new"


def test_custom_repeat_interval() -> None:
    """repeat_interval is a parameter (Alertmanager's default is 4h)."""
    states = {s.fingerprint: s for s in evaluate("p", [A], {}, T0).states}
    result = evaluate("p", [A], states, T0 + timedelta(minutes=30), timedelta(minutes=30))
    assert [n.kind for n in result.notifications] == [R]


def test_other_sources_are_not_resolved() -> None:
    """An evaluation of one source never resolves alerts another source raised."""
    states = {s.fingerprint: s for s in evaluate("rollback", [A], {}, T0).states}
    result = evaluate("policy", [], states, T0 + H)
    assert result.notifications == ()
    assert states[A.fingerprint].status is AlertStatus.FIRING


def test_no_state_change_means_no_writes() -> None:
    """A steady firing alert produces no changed states (nothing to write each tick)."""
    states = {s.fingerprint: s for s in evaluate("p", [A], {}, T0).states}
    assert evaluate("p", [A], states, T0 + H).states == ()


@pytest.mark.parametrize(
    ("active", "now", "repeat", "message"),
    [
        ((A, A), T0, 4 * H, "appears twice"),
        ((A.resolved(T0),), T0, 4 * H, "has ends_at set"),
        ((A,), T0.replace(tzinfo=None), 4 * H, "now must be timezone-aware"),
        ((A,), T0, timedelta(0), "repeat_interval must be positive"),
    ],
)
def test_bad_input(active: tuple[Alert, ...], now: object, repeat: timedelta, message: str) -> None:
    """Bad input is rejected with a clear reason."""
    with pytest.raises(AlertValidationError, match=message):
        evaluate("policy", active, {}, now, repeat)  # type: ignore[arg-type]
