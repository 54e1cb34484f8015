"""``POST /v1/accuracy``: live observations posted to the daemon, behind a bearer token.

The body is checked by the rules `watcher report-accuracy` uses (monitor/reports.py: the
same messages), the version resolved from what the monitor's last poll stored (the
Production version when none is given), and the observation committed to the state DB
before the 202: a daemon killed right after still counts it when it is back. Then the
monitor is hinted so that it polls now rather than at its next interval.

Runs on HTTP worker threads: it touches only its own state connection (under a lock).
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from watcher.errors import StateError
from watcher.monitor import table
from watcher.monitor.intake_store import Stored, insert
from watcher.monitor.reports import BadReport, Report, parse_report, resolve_version, unknown_model
from watcher.ports import matches
from watcher.runtime.clock import Clock, SystemClock
from watcher.runtime.logging import get_logger
from watcher.runtime.once import Throttle
from watcher.runtime.routes import Reply, Request, error
from watcher.runtime.state import StateStore, open_state

PATH = "/v1/accuracy"
MAX_BODY = 16 * 1024  # bytes; a report is about 150
RETRY_AFTER = "60"  # seconds, when the table is full or the state DB fails
WARN_EVERY = 60.0  # seconds between warnings about refused tokens
UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="registry-watcher"'}
log = get_logger("watcher.monitor.intake")


class AccuracyIntake:
    """Implements :class:`watcher.runtime.routes.Route`."""

    path: str = PATH
    methods: tuple[str, ...] = ("POST",)
    max_body: int = MAX_BODY

    def __init__(
        self,
        token: str,
        models: Sequence[str],
        state_dir: Path,
        hint: Callable[[str], None],
        clock: Clock | None = None,
        *,
        watched_metric: Callable[[str], str] | None = None,
    ) -> None:
        self._token = token.encode()
        self.models = list(models)
        # The metric each model is judged on (monitor.policy_for): another is never read.
        self.watched_metric = watched_metric
        self.state_dir = state_dir
        self.hint = hint
        self.clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._state: StateStore | None = None
        self._refusals = Throttle(WARN_EVERY)

    def handle(self, request: Request) -> Reply:
        if not self._authorized(request.headers.get("authorization", "")):
            self._refused(request.client)
            return Reply(401, {"error": "missing or wrong bearer token"}, UNAUTHORIZED)
        now = self.clock.now()
        try:
            report, names = parse_report(request.body, now)
        except BadReport as exc:
            return error(400, str(exc), field=exc.field)
        if not matches(report.model, self.models):
            detail = f"{report.model!r} is not watched by this daemon (monitor.models)"
            return error(404, f"model: {detail}", field="model")
        watched = self.watched_metric(report.model) if self.watched_metric else report.metric
        if report.metric != watched:
            detail = f"{report.model} is watched on {watched}, not {report.metric}"
            return error(422, f"metric: {detail}", field="metric")
        try:
            stored = self._store(report, names, now)
        except BadReport as exc:
            return error(422, str(exc), field=exc.field)
        except StateError as exc:
            log.warning("intake_store_failed", error=str(exc))
            return Reply(503, {"error": "cannot store it now"}, {"Retry-After": RETRY_AFTER})
        if stored is None:
            log.warning("intake_full", model=report.model)
            body = {"error": "the intake holds too many observations; the monitor prunes them"}
            return Reply(503, body, {"Retry-After": RETRY_AFTER})
        log.info(
            "intake_observation",
            id=stored.id,
            model=stored.model,
            version=stored.version,
            metric=stored.metric,
            value=stored.value,
            samples=stored.samples,
        )
        self.hint(stored.model)
        return Reply(202, _body(stored))

    def _refused(self, client: str) -> None:
        """Warn of refused requests at most every WARN_EVERY seconds: a client guessing
        tokens must not flood the journal."""
        if (count := self._refusals.hit(self.clock.monotonic())) is not None:
            log.warning("intake_unauthorized", client=client, refused=count)

    def _authorized(self, header: str) -> bool:
        scheme, _, given = header.strip().partition(" ")
        offered = given.strip().encode("utf-8", "surrogateescape")
        # Compared in constant time whatever the scheme, so timing tells nothing.
        same = hmac.compare_digest(offered, self._token)
        return same and scheme.lower() == "bearer"

    def _store(self, report: Report, names: dict[str, str], now: datetime) -> Stored | None:
        """Resolve the version against the monitor's last poll and commit the row."""
        with self._lock:
            if self._state is None:
                self._state = open_state(self.state_dir)
            state = self._state
            row = table.load(state).get(report.model)
            if row is None:
                raise BadReport(unknown_model(report.model), names)
            version = resolve_version(
                report.model, report.version, row.production, row.stages, names
            )
            stored = Stored(
                0,
                report.model,
                version,
                report.metric,
                float(report.value),
                int(report.samples),
                report.at or now,
                now,
            )
            with state.transaction() as tx:
                new_id = insert(tx, stored)
        if new_id is None:
            return None
        return replace(stored, id=new_id)

    def close(self) -> None:
        with self._lock:
            if self._state is not None:
                self._state.close()
                self._state = None


def _body(stored: Stored) -> dict[str, Any]:
    return {
        "id": stored.id,
        "model": stored.model,
        "version": stored.version,
        "metric": stored.metric,
        "value": stored.value,
        "samples": stored.samples,
        "at": stored.at.isoformat(),
        "received_at": stored.received_at.isoformat(),
    }
