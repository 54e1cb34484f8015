"""Pure rollback decisions: prior stable version and the automatic-rollback guards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from watcher.monitor.policy import PolicyConfig
from watcher.ports import TAG_PREVIOUS, TAG_QUARANTINED, VersionInfo
from watcher.rollback.policy import AutoGuards, Target, decide_auto, prior_stable

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def versions(**spec: dict[str, str]) -> dict[str, VersionInfo]:
    return {k.lstrip("v"): VersionInfo("m", k.lstrip("v"), tags=v) for k, v in spec.items()}


class TestPriorStable:
    @pytest.mark.parametrize(
        ("registry", "current", "history", "expected"),
        [
            # v2 replaced v1: back to v1.
            (versions(v1={}, v2={TAG_PREVIOUS: "1"}), "2", (), "1"),
            # v2 is quarantined: follow its own lineage past it to v1.
            (
                versions(
                    v1={},
                    v2={TAG_PREVIOUS: "1", TAG_QUARANTINED: "true"},
                    v3={TAG_PREVIOUS: "2"},
                ),
                "3",
                (),
                "1",
            ),
            # No lineage at all: nothing to guess.
            (versions(v1={}, v2={}), "2", (), None),
            # Lineage points at a deleted version: the daemon's history still knows v1.
            (versions(v1={}, v3={TAG_PREVIOUS: "2"}), "3", ("2", "1"), "1"),
            # Only quarantined versions behind: refuse.
            (versions(v1={TAG_QUARANTINED: "true"}, v2={TAG_PREVIOUS: "1"}), "2", (), None),
            # A loop in the tags is detected, not followed forever.
            (
                versions(
                    v1={TAG_PREVIOUS: "2", TAG_QUARANTINED: "true"},
                    v2={TAG_PREVIOUS: "1", TAG_QUARANTINED: "true"},
                    v3={TAG_PREVIOUS: "2"},
                ),
                "3",
                (),
                None,
            ),
        ],
    )
    def test_table(
        self,
        registry: dict[str, VersionInfo],
        current: str,
        history: tuple[str, ...],
        expected: str | None,
    ) -> None:
        """The chain of watcher.previous_production tags, skipping quarantined versions."""
        target = prior_stable(current, registry.get, history)
        assert expected == target.version, target.reason


GUARDS = AutoGuards(after=60, cooldown=1800, max_per_window=2, window=86400)
ACCURACY = PolicyConfig()  # accuracy >= 0.9
RMSE = PolicyConfig(metric="rmse", threshold=40.0)
GOOD = VersionInfo("m", "1", tags={"accuracy": "0.97"})
TARGET = Target("1", (), "previous Production")


class TestDecideAuto:
    @pytest.mark.parametrize(
        ("firing_for", "recent", "target", "info", "live", "allowed", "needle"),
        [
            (120, [], TARGET, GOOD, None, True, "roll back to v1"),
            (30, [], TARGET, GOOD, None, False, "rollback.after"),
            (120, [T0 - timedelta(minutes=10)], TARGET, GOOD, None, False, "cooldown"),
            (
                120,
                [T0 - timedelta(hours=5), T0 - timedelta(hours=3)],
                TARGET,
                GOOD,
                None,
                False,
                "flap guard",
            ),
            (120, [T0 - timedelta(days=2)], TARGET, GOOD, None, True, "roll back"),
            (120, [], Target(None, (), "no prior stable version"), None, None, False, "no prior"),
            (
                120,
                [],
                TARGET,
                VersionInfo("m", "1", tags={"accuracy": "0.5"}),
                None,
                False,
                "training accuracy 0.500",
            ),
            (120, [], TARGET, GOOD, 0.7, False, "live accuracy 0.700"),
        ],
    )
    def test_guards(
        self,
        firing_for: int,
        recent: list[datetime],
        target: Target,
        info: VersionInfo | None,
        live: float | None,
        allowed: bool,
        needle: str,
    ) -> None:
        """after, cooldown, flap guard, missing target and a target below threshold."""
        decision = decide_auto(
            now=T0,
            firing_since=T0 - timedelta(seconds=firing_for),
            guards=GUARDS,
            recent=recent,
            target=target,
            target_info=info,
            target_live=live,
            objective=ACCURACY,
        )
        assert allowed == decision.allowed
        assert needle in decision.reason

    @pytest.mark.parametrize(
        ("tags", "live", "allowed", "needle"),
        [
            ({"rmse": "35.5"}, None, True, "roll back to v1"),
            ({"rmse": "52"}, None, False, "training rmse 52.0000 > 40.0000"),
            ({"rmse": "35.5"}, 41.0, False, "live rmse 41.0000 > 40.0000"),
            ({"rmse": "52"}, 39.0, True, "roll back to v1"),  # live beats training
            ({"accuracy": "0.1"}, None, True, "roll back to v1"),  # not the watched metric
            ({"rmse": "n/a"}, None, True, "roll back to v1"),  # unreadable: unknown
        ],
    )
    def test_target_judged_on_the_watched_metric_in_its_direction(
        self, tags: dict[str, str], live: float | None, allowed: bool, needle: str
    ) -> None:
        """rmse is better lower: a target whose own rmse is above the threshold is refused."""
        decision = decide_auto(
            now=T0,
            firing_since=T0 - timedelta(seconds=120),
            guards=GUARDS,
            recent=[],
            target=TARGET,
            target_info=VersionInfo("m", "1", tags=tags),
            target_live=live,
            objective=RMSE,
        )
        assert (allowed, True) == (decision.allowed, needle in decision.reason), decision.reason
