"""The MLflow registry webhook receiver (``POST /hooks/mlflow``): a delivery is a hint.

Runs on HTTP worker threads (runtime.routes): it touches only what it owns -- its own
state-DB connection (de-duplication, under a lock), the thread-safe :class:`Hints` and
the daemon's wake -- and never the monitor. A verified delivery about a watched model
puts the name on the hints; the monitor reads that model afresh on its poll thread, so
a duplicated, reordered or lost delivery changes nothing (the read is of the current
truth; the reconcile poll catches what was lost).

Replies: 202 accepted; 200 for a delivery id seen before (a no-op: MLflow retries a
delivery -- same id, same signature -- after a 5xx or a broken connection, and a 2xx
stops it; a replay by anyone else changes nothing either); 200 for an unwatched model;
401 unsigned or badly signed; 400 a malformed header or body, or a timestamp outside
``monitor.webhooks.tolerance`` (a stale delivery is never retried into acceptance).
Neither the secret nor a signature is logged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from watcher.config import WEBHOOK_PATH
from watcher.monitor.hints import Hints
from watcher.monitor.signature import Refusal, verify
from watcher.ports import matches
from watcher.runtime.logging import get_logger
from watcher.runtime.once import Throttle
from watcher.runtime.routes import DEFAULT_MAX_BODY, Reply, Request, error
from watcher.runtime.state import StateStore, iso, open_state

if TYPE_CHECKING:
    from watcher.runtime.clock import Clock
    from watcher.runtime.metrics import Metrics

log = get_logger("watcher.monitor.webhooks")
REFUSED_WARN_EVERY = 60.0  # seconds between log lines about refused deliveries


class DeliveryLog:
    """Delivery ids seen within the replay window, in the state DB (a restart does not
    reopen the window). Its own connection, opened on first use, one writer at a time."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._state: StateStore | None = None
        self._lock = threading.Lock()

    def first_time(self, delivery_id: str, event: str, now: datetime, keep: float) -> bool:
        """Record ``delivery_id``; False when it was already there. Ids older than
        ``keep`` seconds are pruned: the timestamp check refuses their replays anyway."""
        with self._lock:
            if self._state is None:
                self._state = open_state(self.state_dir)
            with self._state.transaction() as tx:
                cutoff = iso(now - timedelta(seconds=keep))
                tx.execute("DELETE FROM webhook_deliveries WHERE received_at < ?", (cutoff,))
                cur = tx.execute(
                    "INSERT OR IGNORE INTO webhook_deliveries (delivery_id, event, received_at)"
                    " VALUES (?, ?, ?)",
                    (delivery_id, event, iso(now)),
                )
                return cur.rowcount == 1

    def close(self) -> None:
        with self._lock:
            if self._state is not None:
                self._state.close()
                self._state = None


class Receiver:
    """The webhook route (runtime.routes.Route)."""

    path = WEBHOOK_PATH
    methods: tuple[str, ...] = ("POST",)
    max_body = DEFAULT_MAX_BODY

    def __init__(
        self,
        secret: str,
        tolerance: float,
        models: Sequence[str],
        state_dir: Path,
        clock: Clock,
        *,
        metrics: Metrics | None = None,
    ) -> None:
        self._secret = secret
        self.tolerance = tolerance
        self.models = list(models)
        self.clock = clock
        self.metrics = metrics
        self.hints = Hints()
        self.deliveries = DeliveryLog(state_dir)
        self._wake: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._last: datetime | None = None  # the last verified delivery
        self._refusals = Throttle(REFUSED_WARN_EVERY)

    def bind_wake(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def last_delivery(self) -> datetime | None:
        """When the last verified delivery (a test one included) arrived."""
        with self._lock:
            return self._last

    def close(self) -> None:
        self.deliveries.close()

    def handle(self, request: Request) -> Reply:
        now = self.clock.now()
        found = verify(self._secret, request.headers, request.body, now.timestamp(), self.tolerance)
        if isinstance(found, Refusal):
            self._count("refused")
            # Unauthenticated: at most one line a minute (the counter has every one).
            if (count := self._refusals.hit(self.clock.monotonic())) is not None:
                log.warning(
                    "webhook_refused",
                    client=request.client,
                    status=found.status,
                    reason=found.message,
                    refused=count,
                )
            return error(found.status, found.message)
        keep = 2 * self.tolerance  # a timestamp up to `tolerance` ahead, replayed as late
        if not self.deliveries.first_time(found.delivery_id, found.event, now, keep):
            self._count("duplicate")
            log.info("webhook_duplicate", delivery_id=found.delivery_id, kind=found.event)
            return Reply(200, {"status": "duplicate", "delivery_id": found.delivery_id})
        with self._lock:
            self._last = now
        if found.test or found.model is None or not matches(found.model, self.models):
            self._count("ignored")
            return Reply(200, {"status": "ignored", "delivery_id": found.delivery_id})
        self._count("accepted")
        log.debug("webhook_hint", model=found.model, kind=found.event)
        self.hints.put(found.model)
        if self._wake is not None:
            self._wake()
        return Reply(202, {"status": "accepted", "delivery_id": found.delivery_id})

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(outcome=outcome).inc()
