"""Whether MLflow's registry webhooks can be relied on, which sets the poll cadence.

Healthy: our webhook exists in MLflow, ACTIVE, subscribed to every event, and a
delivery actually reached our receiver recently. Then the full poll runs every
``monitor.reconcile_interval``; otherwise every ``poll_interval`` (fallback).

The check runs on the poll thread after a full poll, at most once per reconcile
interval, and costs nothing while deliveries arrive: a verified delivery within
``SELF_TEST_EVERY`` proves the path. Else it lists the webhooks (1 call per 100) and asks
MLflow for a test delivery (1 call), which must reach the receiver while MLflow waits.
An idle hour at the defaults: 12 reconcile polls (3 calls each with 300 models) + 2
checks of 2 calls = 40 calls, against 360 for a 30 s poll. The main loop reads the
result under a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from watcher.errors import RegistryError
from watcher.ports import WEBHOOK_ACTIVE, WEBHOOK_EVENTS

if TYPE_CHECKING:
    from watcher.ports import RegistryWebhooks
    from watcher.runtime.clock import Clock

SELF_TEST_EVERY = 1800.0  # seconds without a delivery before MLflow is asked for a test one
INSTALL_HINT = "run `watcher webhooks install`"


@dataclass(frozen=True, slots=True)
class HookStatus:
    healthy: bool
    reason: str | None  # why not healthy
    checked_at: datetime | None  # the last check that called MLflow or saw a delivery


class WebhookHealth:
    def __init__(
        self,
        port: RegistryWebhooks,
        url: str,
        last_delivery: Callable[[], datetime | None],
        reconcile_interval: float,
        clock: Clock,
    ) -> None:
        self.port = port
        self.url = url
        self.last_delivery = last_delivery
        self.reconcile_interval = reconcile_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._status = HookStatus(False, "not checked yet", None)
        self._checks = 0
        self._early = False  # the last check that ran was an early one (after a delivery)

    def status(self) -> HookStatus:
        with self._lock:
            return self._status

    def check(self) -> None:
        """After a full poll (poll thread): probe when due; never raises for MLflow."""
        now = self.clock.now()
        current = self.status()
        # At most once per reconcile interval (in fallback polls come more often) -- but
        # the start-up check runs once more at the next poll if it failed: the first poll
        # may beat the HTTP endpoint to listening.
        retry_start = self._checks == 1 and not current.healthy
        last = self.last_delivery()
        # In fallback, a verified delivery since the last check (`webhooks install` just
        # ran) is worth checking at once rather than a reconcile interval later; once
        # per such check, so deliveries to a webhook broken otherwise cost no more.
        early = (
            not current.healthy
            and not self._early
            and last is not None
            and current.checked_at is not None
            and last > current.checked_at
        )
        if current.checked_at is not None and not retry_start and not early:
            since = (now - current.checked_at).total_seconds()
            if since < 0.9 * self.reconcile_interval:
                return
        self._early = early  # a regular check makes the next early one possible again
        self._checks += 1
        recent = max(SELF_TEST_EVERY, self.reconcile_interval)
        if current.healthy and last is not None and (now - last).total_seconds() < recent:
            self._set(HookStatus(True, None, now))
            return
        try:
            reason = self._probe(now)
        except RegistryError as exc:
            reason = f"cannot check the webhook in MLflow: {exc}"
        except Exception as exc:  # never the poll's undoing: a check that failed is a reason
            reason = f"webhook check failed: {type(exc).__name__}: {exc}"
        # Stamped after the probe: its own test delivery is not "since the last check".
        self._set(HookStatus(reason is None, reason, self.clock.now()))

    def _probe(self, started: datetime) -> str | None:
        """None when healthy, else why not."""
        hook = self.port.find(self.url)
        if hook is None:
            return f"no webhook of ours calls {self.url} in MLflow ({INSTALL_HINT})"
        if hook.status != WEBHOOK_ACTIVE:
            return f"our webhook is {hook.status} in MLflow ({INSTALL_HINT})"
        missing = sorted(set(WEBHOOK_EVENTS) - set(hook.events))
        if missing:
            return f"our webhook lacks events {', '.join(missing)} ({INSTALL_HINT})"
        test = self.port.test(hook.webhook_id)
        if not test.success:
            if test.status == 401:
                return f"our receiver refused MLflow's test delivery as unsigned ({INSTALL_HINT})"
            detail = test.error or f"HTTP {test.status}"
            return f"MLflow's test delivery to {self.url} failed: {detail}"
        last = self.last_delivery()
        if last is None or last < started:
            return f"MLflow's test delivery to {self.url} did not reach this watcher"
        return None

    def _set(self, status: HookStatus) -> None:
        with self._lock:
            self._status = status
