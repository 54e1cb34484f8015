"""The live-metric policy: pure, per model version, no clock reads and no I/O.

One metric per model (accuracy by default; any of ``pipeline.metrics``), judged by
its own direction: a breach is a windowed value that does not pass the threshold
(below it for accuracy, above it for rmse).

States follow Prometheus: ok → pending (breach seen, waiting ``for``) → firing →
resolved (breach cleared for ``keep_firing_for``) → ok. Too few samples in the
window is *inconclusive* (Argo's term): it never starts an alert and never ends
one — no evidence either way. A new Production version starts from a fresh state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pipeline.metrics import Metric, metric

# Bounds of one observation from outside (the CLI, MLflow): more samples than this is not a
# real count (10**19 overflowed SQLite), and a time further ahead than the skew would stay
# the newest observation in the window for ever.
MAX_SAMPLES = 10**12
MAX_CLOCK_SKEW = timedelta(minutes=5)


class Status(StrEnum):
    OK = "ok"
    INCONCLUSIVE = "inconclusive"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Observation:
    """Live ``metric`` of one model version over ``samples`` labelled predictions."""

    at: datetime
    value: float
    samples: int
    metric: str = "accuracy"


def range_text(m: Metric) -> str:
    """The metric's range for messages: ``in [0, 1]``, ``>= 0``, ``<= 1``."""
    if math.isinf(m.highest):
        return f">= {m.lowest:g}"
    if math.isinf(m.lowest):
        return f"<= {m.highest:g}"
    return f"in [{m.lowest:g}, {m.highest:g}]"


@dataclass(frozen=True, slots=True)
class Fault:
    """What makes an observation unusable: the ``field`` (``metric``, ``value``,
    ``samples``, ``at``) and the ``detail`` without it, so that each front end names
    the field its own way (the CLI as ``--value``, ``--samples``)."""

    field: str
    detail: str

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}"


def observation_problem(
    value: float,
    samples: int | float,
    at: datetime | None = None,
    now: datetime | None = None,
    *,
    metric_name: str = "accuracy",
) -> str | None:
    """Why an observation is unusable (naming the field), or None."""
    fault = observation_fault(value, samples, at, now, metric_name=metric_name)
    return None if fault is None else str(fault)


def observation_fault(
    value: float,
    samples: int | float,
    at: datetime | None = None,
    now: datetime | None = None,
    *,
    metric_name: str = "accuracy",
) -> Fault | None:
    """What makes an observation unusable, or None. ``at`` is checked against ``now``
    plus :data:`MAX_CLOCK_SKEW` when both are given."""
    try:
        m = metric(metric_name)
    except KeyError as exc:
        return Fault("metric", exc.args[0])
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Fault("value", f"{m.name} must be a number, got {value!r}")
    try:
        float(value)  # a JSON integer of 400 digits overflows a float
    except OverflowError:
        return Fault(
            "value", f"{m.name} must be a finite number {range_text(m)}, got {_short(value)}"
        )
    if not m.in_range(value):  # a finite number in the metric's range
        return Fault("value", f"{m.name} must be a finite number {range_text(m)}, got {value}")
    if isinstance(samples, float) and samples.is_integer():
        samples = int(samples)  # MLflow stores metrics as floats
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        return Fault("samples", f"must be an integer >= 1, got {_short(samples)}")
    if samples > MAX_SAMPLES:
        return Fault("samples", f"must be at most {MAX_SAMPLES:,}, got {_short(samples)}")
    if at is not None and now is not None and at > now + MAX_CLOCK_SKEW:
        ahead = (at - now).total_seconds()
        return Fault(
            "at",
            f"{at.isoformat()} is {ahead:,.0f} s in the future "
            f"(more than {MAX_CLOCK_SKEW.total_seconds():.0f} s of clock skew)",
        )
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"a {len(text)}-digit number"


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    metric: str = "accuracy"  # a name in pipeline.metrics: its direction decides a breach
    threshold: float = 0.9  # a passing value is at or better than this
    window: int = 5  # last N observations
    min_samples: int = 100  # summed over the window
    for_: float = 0.0  # seconds the breach must hold before firing
    keep_firing_for: float = 0.0  # seconds of recovery before resolving

    def __post_init__(self) -> None:
        try:
            m = metric(self.metric)
        except KeyError as exc:  # names the known metrics
            raise ValueError(exc.args[0]) from None
        if not m.in_range(self.threshold):
            raise ValueError(
                f"threshold must be {range_text(m)} for {m.name}, got {self.threshold}"
            )
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {self.min_samples}")
        if self.for_ < 0 or self.keep_firing_for < 0:
            raise ValueError("for and keep_firing_for must not be negative")

    def catalogue(self) -> Metric:
        return metric(self.metric)

    def breached(self, value: float) -> bool:
        """The catalogue's direction decides: below the threshold for accuracy, above for rmse."""
        return not self.catalogue().passes(value, self.threshold)

    def compare(self, value: float) -> str:
        """``rmse 41.2000 > 40.0000``: the value against the threshold, for messages."""
        m = self.catalogue()
        op = m.symbol() if not self.breached(value) else "<" if m.direction == "higher" else ">"
        return f"{m.name} {value:.4f} {op} {self.threshold:.4f}"


@dataclass(frozen=True, slots=True)
class PolicyState:
    """What must survive between evaluations (and restarts) for one model version."""

    version: str
    status: Status = Status.OK
    pending_since: datetime | None = None
    firing_since: datetime | None = None
    clear_since: datetime | None = None  # first good evaluation while firing

    def to_json(self) -> dict[str, Any]:
        def ts(v: datetime | None) -> str | None:
            return None if v is None else v.isoformat()

        return {
            "version": self.version,
            "status": self.status.value,
            "pending_since": ts(self.pending_since),
            "firing_since": ts(self.firing_since),
            "clear_since": ts(self.clear_since),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PolicyState:
        def ts(key: str) -> datetime | None:
            v = data.get(key)
            return None if v is None else datetime.fromisoformat(str(v))

        return cls(
            version=str(data["version"]),
            status=Status(data["status"]),
            pending_since=ts("pending_since"),
            firing_since=ts("firing_since"),
            clear_since=ts("clear_since"),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    state: PolicyState
    value: float | None  # of ``metric``, sample-weighted over the window
    samples: int
    breach: bool | None  # None when inconclusive
    reason: str
    next_check: datetime | None = None  # when time alone may change the status
    metric: str = "accuracy"

    @property
    def status(self) -> Status:
        return self.state.status

    @property
    def firing(self) -> bool:
        return self.state.status is Status.FIRING


def window_stats(
    observations: Sequence[Observation], window: int, metric_name: str = "accuracy"
) -> tuple[float | None, int]:
    """Sample-weighted mean of ``metric_name`` and total samples of the newest ``window``
    observations of that metric."""
    mine = [o for o in observations if o.metric == metric_name]
    recent = sorted(mine, key=lambda o: o.at)[-window:]
    samples = sum(o.samples for o in recent)
    if samples <= 0:
        return None, 0
    return sum(o.value * o.samples for o in recent) / samples, samples


def evaluate(
    state: PolicyState,
    observations: Sequence[Observation],
    config: PolicyConfig,
    now: datetime,
) -> Decision:
    """One evaluation of ``state.version`` given its observations (of any metric: only
    ``config.metric`` counts)."""
    value, samples = window_stats(observations, config.window, config.metric)
    prev = state.status

    def decide(
        new: PolicyState, breach: bool | None, reason: str, due: datetime | None = None
    ) -> Decision:
        return Decision(new, value, samples, breach, reason, due, config.metric)

    if value is None or samples < config.min_samples:
        reason = (
            f"{samples} samples in the last {config.window} observations < {config.min_samples}"
        )
        if prev is Status.FIRING:
            # No evidence of recovery: a firing alert stays firing.
            return decide(replace(state, clear_since=None), None, reason)
        return decide(PolicyState(state.version, Status.INCONCLUSIVE), None, reason)

    breach = config.breached(value)
    reason = f"{config.compare(value)} over {samples} samples"

    if breach:
        if prev is Status.FIRING:
            return decide(replace(state, clear_since=None), True, reason)
        since = state.pending_since if prev is Status.PENDING else now
        assert since is not None  # noqa: S101  (pending always has pending_since)
        held = (now - since).total_seconds()
        if held >= config.for_:
            new = PolicyState(state.version, Status.FIRING, pending_since=since, firing_since=now)
            return decide(new, True, reason)
        pending = PolicyState(state.version, Status.PENDING, pending_since=since)
        return decide(pending, True, reason, since + timedelta(seconds=config.for_))

    if prev is Status.FIRING:
        clear = state.clear_since or now
        if (now - clear).total_seconds() >= config.keep_firing_for:
            return decide(PolicyState(state.version, Status.RESOLVED), False, reason)
        kept = replace(state, clear_since=clear)
        return decide(kept, False, reason, clear + timedelta(seconds=config.keep_firing_for))
    return decide(PolicyState(state.version, Status.OK), False, reason)
