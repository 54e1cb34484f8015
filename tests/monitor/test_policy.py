"""Table tests for the pure live-accuracy policy (watcher/monitor/policy.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.monitor.policy import (
    Observation,
    PolicyConfig,
    PolicyState,
    Status,
    evaluate,
    window_stats,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def obs(*pairs: tuple[float, int]) -> list[Observation]:
    return [Observation(T0 + timedelta(minutes=i), a, n) for i, (a, n) in enumerate(pairs)]


CFG = PolicyConfig(threshold=0.9, window=3, min_samples=100, for_=60, keep_firing_for=120)

# (case, prior state, observations, seconds after T0, expected status)
CASES = [
    ("healthy", PolicyState("1"), obs((0.95, 200)), 0, Status.OK),
    ("too few samples", PolicyState("1"), obs((0.5, 40), (0.5, 40)), 0, Status.INCONCLUSIVE),
    ("no observations", PolicyState("1"), [], 0, Status.INCONCLUSIVE),
    ("breach starts pending", PolicyState("1"), obs((0.5, 200)), 0, Status.PENDING),
    (
        "pending before for",
        PolicyState("1", Status.PENDING, pending_since=T0),
        obs((0.5, 200)),
        59,
        Status.PENDING,
    ),
    (
        "pending reaches for",
        PolicyState("1", Status.PENDING, pending_since=T0),
        obs((0.5, 200)),
        60,
        Status.FIRING,
    ),
    (
        "pending recovers",
        PolicyState("1", Status.PENDING, pending_since=T0),
        obs((0.95, 200)),
        30,
        Status.OK,
    ),
    (
        "pending loses samples",
        PolicyState("1", Status.PENDING, pending_since=T0),
        obs((0.5, 10)),
        90,
        Status.INCONCLUSIVE,
    ),
    (
        "firing holds without evidence",
        PolicyState("1", Status.FIRING, T0, T0),
        obs((0.95, 10)),
        600,
        Status.FIRING,
    ),
    (
        "firing recovers within keep_firing_for",
        PolicyState("1", Status.FIRING, T0, T0),
        obs((0.95, 500)),
        0,
        Status.FIRING,
    ),
    (
        "firing recovered long enough",
        PolicyState("1", Status.FIRING, T0, T0, clear_since=T0),
        obs((0.95, 500)),
        120,
        Status.RESOLVED,
    ),
    (
        "renewed breach resets the recovery clock",
        PolicyState("1", Status.FIRING, T0, T0, clear_since=T0),
        obs((0.5, 500)),
        500,
        Status.FIRING,
    ),
    ("resolved then healthy", PolicyState("1", Status.RESOLVED), obs((0.95, 200)), 0, Status.OK),
    (
        "window drops old bad observations",
        PolicyState("1"),
        obs((0.1, 1000), (0.95, 100), (0.95, 100), (0.95, 100)),
        0,
        Status.OK,
    ),
    ("exactly at threshold is ok", PolicyState("1"), obs((0.9, 100)), 0, Status.OK),
]


@pytest.mark.parametrize(
    ("prior", "observations", "after", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_transitions(
    prior: PolicyState, observations: list[Observation], after: int, expected: Status
) -> None:
    """Each row: from a prior state, the window's evidence and the time decide the status."""
    decision = evaluate(prior, observations, CFG, T0 + timedelta(seconds=after))
    assert expected == decision.status


def test_for_zero_fires_on_first_breach() -> None:
    """With `for` = 0 a breach fires at once (Prometheus without `for:`)."""
    cfg = PolicyConfig(threshold=0.9, window=1, min_samples=1)
    assert Status.FIRING == evaluate(PolicyState("1"), obs((0.2, 5)), cfg, T0).status


def test_keep_firing_zero_resolves_on_first_good_window() -> None:
    """Without keep_firing_for the first good evaluation resolves."""
    cfg = PolicyConfig(threshold=0.9, window=1, min_samples=1)
    firing = PolicyState("1", Status.FIRING, T0, T0)
    assert Status.RESOLVED == evaluate(firing, obs((0.99, 5)), cfg, T0).status


def test_pending_reports_when_to_check_again() -> None:
    """A pending decision tells the caller when `for` elapses, so it can re-evaluate on time."""
    decision = evaluate(PolicyState("1"), obs((0.5, 200)), CFG, T0)
    assert T0 + timedelta(seconds=60) == decision.next_check
    assert T0 == decision.state.pending_since


def test_window_is_sample_weighted() -> None:
    """The window's accuracy weights each observation by its samples."""
    acc, samples = window_stats(obs((1.0, 300), (0.0, 100)), 5)
    assert (0.75, 400) == (acc, samples)


def test_state_round_trips_through_json() -> None:
    """Policy state survives a restart (stored as JSON in the state DB)."""
    state = PolicyState("7", Status.FIRING, T0, T0 + timedelta(seconds=5), None)
    assert state == PolicyState.from_json(state.to_json())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 1.5},
        {"window": 0},
        {"min_samples": 0},
        {"for_": -1.0},
        {"metric": "rmse", "threshold": -1.0},
        {"metric": "rmsle"},
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, float]) -> None:
    """Bad policy settings fail at construction, naming the field."""
    with pytest.raises(ValueError, match=list(kwargs)[-1].rstrip("_")):
        PolicyConfig(**kwargs)  # type: ignore[arg-type]


RMSE = PolicyConfig(metric="rmse", threshold=40.0, window=3, min_samples=100, for_=60)


def rmse_obs(*pairs: tuple[float, int], metric: str = "rmse") -> list[Observation]:
    return [Observation(T0 + timedelta(minutes=i), v, n, metric) for i, (v, n) in enumerate(pairs)]


@pytest.mark.parametrize(
    ("observations", "status", "reason"),
    [
        (rmse_obs((30.0, 200)), Status.OK, "rmse 30.0000 <= 40.0000 over 200 samples"),
        (rmse_obs((40.0, 200)), Status.OK, "rmse 40.0000 <= 40.0000"),  # at the threshold
        (rmse_obs((41.2, 200)), Status.PENDING, "rmse 41.2000 > 40.0000"),
        (rmse_obs((60.0, 100), (20.0, 300)), Status.OK, "rmse 30.0000"),  # sample-weighted
        # Another metric's values are not evidence about rmse.
        (rmse_obs((0.1, 500), metric="accuracy"), Status.INCONCLUSIVE, "0 samples"),
    ],
)
def test_lower_is_better_metric_breaches_above_its_threshold(
    observations: list[Observation], status: Status, reason: str
) -> None:
    """The direction comes from pipeline/metrics.py: rmse breaches above, not below."""
    decision = evaluate(PolicyState("1"), observations, RMSE, T0)
    assert (status, "rmse") == (decision.status, decision.metric)
    assert reason in decision.reason


def test_rmse_breach_fires_after_for_and_resolves() -> None:
    """The same lifecycle as accuracy (pending → firing → resolved) in rmse's direction."""
    pending = evaluate(PolicyState("1"), rmse_obs((55.0, 200)), RMSE, T0)
    firing = evaluate(pending.state, rmse_obs((55.0, 200)), RMSE, T0 + timedelta(seconds=60))
    assert (Status.PENDING, Status.FIRING) == (pending.status, firing.status)
    good = rmse_obs((55.0, 200), (10.0, 200), (10.0, 200))
    resolved = evaluate(firing.state, good, RMSE, T0 + timedelta(seconds=90))
    assert Status.RESOLVED == resolved.status
