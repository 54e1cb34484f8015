"""Pure rollback decisions: which version is "prior stable", and may we roll back now.

No I/O, no clock reads: callers pass registry facts and ``now``. Table-tested.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from watcher.monitor.policy import PolicyConfig
from watcher.ports import VersionInfo


def training_value(info: VersionInfo, metric: str) -> float | None:
    """The version's own training score of ``metric``: the version tag of that name
    (``accuracy``, ``rmse``… as pipeline/register.py writes them); None when absent."""
    raw = info.tags.get(metric)
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Target:
    """The version a rollback would move Production to, and how it was found."""

    version: str | None
    trail: tuple[str, ...]  # versions walked through (quarantined or missing ones)
    reason: str  # why this target, or why none


def prior_stable(
    current: str,
    get: Callable[[str], VersionInfo | None],
    history: Sequence[str] = (),
) -> Target:
    """The last Production before ``current`` that is not quarantined.

    Walks the ``watcher.previous_production`` chain written at promotion (so a
    fresh state dir still works), skipping quarantined versions; falls back to
    the daemon's own record of past Production versions (newest first).
    """
    trail: list[str] = []
    seen = {current}
    info = get(current)
    while info is not None and info.previous_production:
        prev = info.previous_production
        if prev in seen:
            return Target(None, tuple(trail), f"lineage loop at v{prev}")
        seen.add(prev)
        info = get(prev)
        if info is None:
            trail.append(prev)
            break  # deleted: the chain beyond it is unknown, try the history
        if not info.quarantined and info.status == "READY":
            return Target(prev, tuple(trail), "previous Production (registry lineage)")
        trail.append(prev)
    for past in history:
        if past in seen:
            continue
        seen.add(past)
        hinfo = get(past)
        if hinfo is not None and not hinfo.quarantined and hinfo.status == "READY":
            return Target(past, tuple(trail), "previous Production (watcher history)")
    return Target(
        None,
        tuple(trail),
        f"no prior stable version of v{current} (lineage: "
        + (", ".join(f"v{v}" for v in trail) or "none")
        + ")",
    )


@dataclass(frozen=True, slots=True)
class AutoGuards:
    after: float  # seconds the alert must have fired
    cooldown: float
    max_per_window: int
    window: float


@dataclass(frozen=True, slots=True)
class AutoDecision:
    allowed: bool
    reason: str
    wait: bool = False  # not refused, just not yet (rollback.after)


def decide_auto(
    *,
    now: datetime,
    firing_since: datetime,
    guards: AutoGuards,
    recent: Sequence[datetime],
    target: Target,
    target_info: VersionInfo | None,
    target_live: float | None,
    objective: PolicyConfig,
) -> AutoDecision:
    """May an automatic rollback run now? ``recent``: this model's past automatic rollbacks;
    ``target_live``: the target's windowed live value of ``objective.metric`` (None: not
    observed), judged against ``objective.threshold`` in the metric's own direction."""
    fired_for = (now - firing_since).total_seconds()
    if fired_for < guards.after:
        return AutoDecision(
            False, f"alert firing for {fired_for:.0f}s < rollback.after {guards.after:g}s", True
        )
    if target.version is None or target_info is None:
        return AutoDecision(False, target.reason)
    if recent:
        last = max(recent)
        since = (now - last).total_seconds()
        if since < guards.cooldown:
            return AutoDecision(
                False, f"cooldown: last automatic rollback {since:.0f}s ago < {guards.cooldown:g}s"
            )
        in_window = [t for t in recent if now - t < timedelta(seconds=guards.window)]
        if len(in_window) >= guards.max_per_window:
            return AutoDecision(
                False,
                f"flap guard: {len(in_window)} automatic rollbacks within "
                f"{guards.window:g}s (max {guards.max_per_window}); alerting only",
            )
    value, source = target_live, "live"
    if value is None:
        value, source = training_value(target_info, objective.metric), "training"
    if value is not None and objective.breached(value):
        return AutoDecision(
            False,
            f"target v{target.version} {source} {objective.compare(value)}: "
            "worse than the threshold",
        )
    return AutoDecision(True, f"roll back to v{target.version} ({target.reason})")
