"""Outbox dispatcher: persist deliveries, send what is due, retry with backoff.

Clock-free: every method takes ``now``. Per channel, deliveries go out in the
order they were enqueued; a channel whose oldest delivery is backing off waits
as a whole (so a resolve never overtakes its firing) while other channels go on.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

import structlog

from alerts.errors import AlertValidationError, describe_error
from alerts.lifecycle import DEFAULT_REPEAT_INTERVAL, AlertState, evaluate
from alerts.model import Alert, Notification, NotificationKind
from alerts.notifiers.base import Notifier, ResendingNotifier
from alerts.routing import Route, Router, plan_deliveries

if TYPE_CHECKING:
    from alerts.store import AlertStore, Delivery

_log = structlog.get_logger("alerts.dispatcher")
_MAX_BATCH = 50


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": delay in [d/2, d], d = base·2^(n-1) ≤ cap."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if not timedelta(0) < self.base <= self.cap:
            raise AlertValidationError(
                f"backoff: need 0 < base <= cap, got base={self.base}, cap={self.cap}"
            )

    def delay(self, attempts: int, rand: float) -> timedelta:
        return timedelta(seconds=backoff_seconds(attempts, self.base, self.cap, rand))


# Doubling stops here: 2**32 times any base is past every cap, and an uncapped exponent
# overflows a float after 1,024 failures (a long outage with a short base).
_MAX_EXPONENT: Final = 32


def backoff_seconds(attempts: int, base: timedelta, cap: timedelta, rand: float) -> float:
    """Seconds before retry ``attempts`` + 1: base·2^(attempts-1) capped, with "equal
    jitter" (half fixed, half ``rand`` in [0, 1]) so many senders spread without
    collapsing to 0. Computed in float seconds: finite for any attempt count."""
    exponent = min(max(attempts - 1, 0), _MAX_EXPONENT)
    full = min(cap.total_seconds(), base.total_seconds() * 2.0**exponent)
    return full / 2 + full / 2 * rand


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    resent: int = 0
    pending: int = 0
    errors: dict[str, str] = field(default_factory=dict)  # channel -> last error this round
    failing_channels: frozenset[str] = frozenset()

    @property
    def notifier_failing(self) -> bool:
        return bool(self.failing_channels)


class Dispatcher:
    """Turns alert sets into persisted deliveries and sends them, one channel at a time.

    ``process(source, active, now)`` runs the lifecycle and records states and
    deliveries atomically; ``deliver_due(now)`` sends what is due. ``random`` is
    the jitter source (inject a constant in tests).
    """

    def __init__(
        self,
        store: AlertStore,
        notifiers: Sequence[Notifier],
        routes: Sequence[Route] = (),
        *,
        repeat_interval: timedelta = DEFAULT_REPEAT_INTERVAL,
        backoff: Backoff | None = None,
        failing_after: int = 3,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if failing_after < 1:
            raise AlertValidationError(f"failing_after must be >= 1, got {failing_after}")
        self._store = store
        self._notifiers = {n.name: n for n in notifiers}
        self._router = Router([n.name for n in notifiers], routes)
        self._repeat_interval = repeat_interval
        self._backoff = backoff or Backoff()
        self._failing_after = failing_after
        self._random = random
        self._last_resend: dict[str, datetime] = {}

    # -- deciding -----------------------------------------------------------

    def process(self, source: str, active: Iterable[Alert], now: datetime) -> list[Notification]:
        """Run the lifecycle for ``source`` and record states + deliveries in one transaction."""
        result = evaluate(source, active, self._store.load_states(), now, self._repeat_interval)
        self._record(result.states, result.notifications, now)
        return list(result.notifications)

    def enqueue(self, notifications: Iterable[Notification], now: datetime) -> int:
        """Persist deliveries for notifications decided elsewhere; return how many were new."""
        return self._record((), tuple(notifications), now)

    def _record(
        self, states: Iterable[AlertState], notes: Sequence[Notification], now: datetime
    ) -> int:
        send_resolved = {name: n.send_resolved for name, n in self._notifiers.items()}
        planned = plan_deliveries(notes, self._router, send_resolved)
        return self._store.record(states, planned, now)

    # -- sending ------------------------------------------------------------

    def deliver_due(self, now: datetime) -> DeliveryReport:
        delivered = failed = 0
        errors: dict[str, str] = {}
        by_channel: dict[str, list[Delivery]] = {}
        for delivery in self._store.pending():
            by_channel.setdefault(delivery.channel, []).append(delivery)
        for channel, queue in by_channel.items():
            notifier = self._notifiers.get(channel)
            if notifier is None:
                continue  # channel removed from config: keep its rows for the record
            if queue[0].next_attempt_at > now:
                continue
            for batch in _batches(queue):
                try:
                    notifier.send([d.notification for d in batch])
                except Exception as exc:  # a broken channel must not stop others
                    message = describe_error(exc)
                    errors[channel] = message
                    attempts = max(d.attempts for d in batch) + 1
                    retry_at = now + self._backoff.delay(attempts, self._random())
                    self._store.mark_failed([d.id for d in batch], message, retry_at)
                    failed += len(batch)
                    _log.warning(
                        "alert delivery failed",
                        channel=channel,
                        error=message,
                        attempts=attempts,
                        retry_at=retry_at.isoformat(),
                    )
                    break
                self._store.mark_delivered([d.id for d in batch], now)
                delivered += len(batch)
        resent = self._resend_active(now, errors)
        return DeliveryReport(
            delivered=delivered,
            failed=failed,
            resent=resent,
            pending=len(self._store.pending()),
            errors=errors,
            failing_channels=self.failing_channels,
        )

    def _resend_active(self, now: datetime, errors: dict[str, str]) -> int:
        """Re-send firing alerts to channels that need it (Alertmanager's resolve_timeout)."""
        resent = 0
        firing: list[Alert] | None = None
        for name, notifier in self._notifiers.items():
            if not isinstance(notifier, ResendingNotifier):
                continue
            last = self._last_resend.get(name)
            if last is not None and now - last < notifier.resend_interval:
                continue
            if firing is None:
                firing = [s.alert for s in self._store.firing_states()]
            notes = [
                Notification(a, NotificationKind.REPEAT)
                for a in firing
                if name in self._router.channels_for(a.labels)
            ]
            self._last_resend[name] = now
            if not notes:
                continue
            try:
                notifier.send(notes)
            except Exception as exc:  # best effort: next round retries
                errors.setdefault(name, describe_error(exc))
                continue
            resent += len(notes)
        return resent

    def close(self) -> None:
        """Close notifiers that hold connections (HTTP clients)."""
        for notifier in self._notifiers.values():
            close = getattr(notifier, "close", None)
            if callable(close):
                close()

    # -- health -------------------------------------------------------------

    @property
    def failing_channels(self) -> frozenset[str]:
        """Channels whose pending delivery failed ``failing_after`` times in a row."""
        failing = self._store.failing_channels(self._failing_after)
        return frozenset(c for c in failing if c in self._notifiers)

    @property
    def notifier_failing(self) -> bool:
        return bool(self.failing_channels)


def _batches(queue: Sequence[Delivery]) -> list[list[Delivery]]:
    """Split a channel's queue so no batch holds the same alert twice (order kept)."""
    batches: list[list[Delivery]] = []
    current: list[Delivery] = []
    seen: set[str] = set()
    for delivery in queue:
        fp = delivery.notification.alert.fingerprint
        if fp in seen or len(current) >= _MAX_BATCH:
            batches.append(current)
            current, seen = [], set()
        current.append(delivery)
        seen.add(fp)
    if current:
        batches.append(current)
    return batches
