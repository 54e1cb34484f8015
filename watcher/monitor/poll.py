"""Registry monitoring: poll MLflow on a schedule, decide and notify in ``tick()``.

The APScheduler job (one worker thread; the process's registry adapter is thread-safe)
only reads the registry and the live-accuracy observations and puts the result
on a queue. ``tick()`` (the daemon loop) hands results to the registry diff
(monitor/changes.py) and the accuracy policy (monitor/accuracy.py). MLflow being
unreachable is logged once per outage, shown in health, and alerted after
``mlflow_down_alert_after``; the daemon keeps going and resumes when MLflow returns.
A live-observation source that cannot be read (Prometheus) is an outage of its own
(monitor/outage.py): the registry poll still counts, the policy gets no observations.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from watcher.errors import ObservationsUnavailable, RegistryError, RegistryUnavailable, StateError
from watcher.monitor.accuracy import AccuracyWatch
from watcher.monitor.changes import RegistryChanges
from watcher.monitor.hints import Hints
from watcher.monitor.outage import MLFLOW, MLFLOW_DOWN_ALERT, MLFLOW_SOURCE, Outage, SourceOutages
from watcher.monitor.sources import unavailable
from watcher.ports import matches
from watcher.runtime import stopping
from watcher.runtime.clock import Clock, SystemClock
from watcher.runtime.component import Health
from watcher.runtime.logging import get_logger
from watcher.runtime.once import OncePerCause
from watcher.runtime.state import META_LAST_POLL, StateStore, iso

if TYPE_CHECKING:
    from watcher.config import MonitorConfig
    from watcher.monitor.policy import Decision, Observation, PolicyState
    from watcher.monitor.webhook_health import WebhookHealth
    from watcher.monitor.webhooks import Receiver
    from watcher.ports import (
        AlertSink,
        ModelSnapshot,
        ObservationSource,
        ProductionMoves,
        Registry,
    )
    from watcher.runtime.metrics import Metrics

log = get_logger("watcher.monitor.poll")

__all__ = ["MLFLOW_DOWN_ALERT", "MLFLOW_SOURCE", "Monitor", "PollResult"]
RETRY_DELAY = 1.0  # our own retry inside a cycle, after MLflow's small retry budget
STOP_GRACE = 0.2  # a poll still running then is read-only: left to end with the process
HINT_MIN_GAP = 1.0  # seconds from one poll's start to a hinted one's


class _DaemonWorker(concurrent.futures.Executor):
    """A one-thread executor whose thread is a daemon (concurrent.futures' threads are not)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[concurrent.futures.Future[Any], Any] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="registry-poll", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to APScheduler's error listener
                future.set_exception(exc)

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put((future, lambda: fn(*args, **kwargs)))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._queue.put(None)
        if wait:
            self._thread.join()

    def join(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()


class _OverrunNoise(logging.Filter):
    """APScheduler warns at every run skipped while a poll is still going ("skipped: maximum
    number of running instances", "was missed by"): a storm when MLflow is slow. The monitor
    counts those (watcher_poll_overruns_total) and logs them once per episode instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return "maximum number of running instances" not in text and "was missed by" not in text


_OVERRUN_NOISE = _OverrunNoise()


@dataclass(frozen=True, slots=True)
class PollResult:
    at: datetime
    snapshots: list[ModelSnapshot] | None  # None: the poll failed
    observations: dict[tuple[str, str], list[Observation]] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    calls: int = 0
    only: frozenset[str] | None = None  # a webhook hint's read of these models; None: all
    # Observation sources that could not be read (name -> why): an outage of their own;
    # the registry poll stands, and ``observations`` holds only what the others returned.
    observations_down: Mapping[str, str] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """A source of observations was down: what the others returned is partial."""
        return bool(self.observations_down)


class _Schedule:
    """The APScheduler interval job on one daemon worker thread, and what it counts."""

    def __init__(self, interval: float, on_overrun: Callable[[], None]) -> None:
        self.interval = interval
        self.on_overrun = on_overrun
        self.job_errors = 0
        self._scheduler: Any = None
        self._worker: _DaemonWorker | None = None

    def start(self, job: Callable[[], object]) -> None:
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
        from apscheduler.executors.pool import BasePoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        class OneDaemonThread(BasePoolExecutor):  # type: ignore[misc]  # untyped base
            def __init__(self, pool: _DaemonWorker) -> None:
                super().__init__(pool)

        # One worker thread: polls never overlap (overruns are skipped). A daemon thread,
        # so a poll stuck in a slow MLflow call cannot hold up shutdown.
        self._worker = _DaemonWorker()
        sched = BackgroundScheduler(
            executors={"default": OneDaemonThread(self._worker)}, timezone=UTC
        )
        sched.add_job(
            job,
            "interval",
            seconds=self.interval,
            id="registry-poll",
            next_run_time=datetime.now(UTC),  # first poll at start, not one interval later
            misfire_grace_time=max(1, int(self.interval / 2)),
            coalesce=True,
            max_instances=1,
        )
        sched.add_listener(
            self._on_job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
        )
        for name in ("apscheduler.scheduler", "apscheduler.executors.default"):
            logging.getLogger(name).addFilter(_OVERRUN_NOISE)
        sched.start()
        self._scheduler = sched

    def _on_job_event(self, event: Any) -> None:
        # Runs in the scheduler thread: count only; tick() and health() report.
        from apscheduler.events import EVENT_JOB_ERROR

        if event.code == EVENT_JOB_ERROR:
            self.job_errors += 1
        else:
            self.on_overrun()

    def running(self) -> bool:
        return self._scheduler is not None and bool(self._scheduler.running)

    def set_interval(self, seconds: float) -> None:
        """The next poll ``seconds`` from now, and every ``seconds`` after it."""
        if self._scheduler is not None and seconds != self.interval:
            self.interval = seconds
            self._scheduler.reschedule_job("registry-poll", trigger="interval", seconds=seconds)

    def submit(self, job: Callable[[], object]) -> concurrent.futures.Future[Any] | None:
        """``job`` on the poll thread, after the poll running now (None: not started)."""
        return None if self._worker is None else self._worker.submit(job)

    def stop(self) -> None:
        if self._scheduler is not None:
            # Jobs check the stop event between MLflow calls; give a running poll a short
            # grace, then leave it (read-only) to die with the process.
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._worker is not None:
            self._worker.join(STOP_GRACE)
            self._worker = None


class _Overruns:
    """Polls skipped (or missed) because one was still running: counted in the scheduler
    thread, logged once per episode in the daemon thread."""

    def __init__(self, interval: float, metrics: Metrics | None) -> None:
        self.interval = interval
        self.metrics = metrics
        self.count = 0
        self._seen = 0  # … up to the end of the last episode
        self._episode = OncePerCause()  # cause: the count at the start of the current one

    def skipped(self) -> None:
        self.count += 1
        if self.metrics is not None:
            self.metrics.poll_overruns.inc()

    def check_started(self) -> None:
        if not self._episode.active and self.count > self._seen:
            self._episode.first(self._seen)
            log.warning(
                "poll_overrun",
                poll_interval=self.interval,
                hint="a registry poll takes longer than monitor.poll_interval; the next ones are"
                " skipped (counted in watcher_poll_overruns_total) until polls are quick again",
            )

    def check_ended(self, poll_seconds: float) -> None:
        if self._episode.active and poll_seconds < self.interval:
            log.info(
                "poll_overrun_ended", skipped=self.ongoing(), poll_seconds=round(poll_seconds, 3)
            )
            self._episode.clear()
            self._seen = self.count

    def ongoing(self) -> int | None:
        """Polls skipped in the current episode (None: none going on)."""
        start = self._episode.cause
        return self.count - start if isinstance(start, int) else None


class _Hooks:
    """Registry webhooks as seen from the main loop: hints become reads on the poll
    thread (one at a time: hints meanwhile coalesce), and the poll cadence follows the
    webhooks' health (reconcile_interval while healthy, else poll_interval)."""

    def __init__(
        self,
        config: MonitorConfig,
        schedule: _Schedule,
        hints: Hints,
        webhooks: WebhookHealth | None,
        polled_sources: bool = False,
    ) -> None:
        self.config = config
        self.schedule = schedule
        self.hints = hints
        self.webhooks = webhooks
        # A source only polling can read (Prometheus): healthy webhooks keep the poll.
        self.polled_sources = polled_sources
        self._reading: concurrent.futures.Future[Any] | None = None
        self._healthy = False  # the cadence set last
        self._warned = False

    def follow_hints(self, read: Callable[[], object]) -> None:
        if not self.hints.pending():
            return
        if self._reading is None or self._reading.done():
            self._reading = self.schedule.submit(read)

    def follow_cadence(self) -> None:
        if self.webhooks is None:
            return
        status = self.webhooks.status()
        if not status.healthy and status.checked_at is not None and not self._warned:
            self._warned = True  # once per episode (the first check failing included)
            log.warning("webhooks_fallback", reason=status.reason, poll_every=self.poll_every)
        if status.healthy == self._healthy:
            return
        self._healthy = status.healthy
        if status.healthy:
            self._warned = False
            log.info("webhooks_healthy", poll_every=self.poll_every_when(healthy=True))
        self.schedule.set_interval(self.poll_every)

    @property
    def poll_every(self) -> float:
        return self.poll_every_when(healthy=self._healthy)

    def poll_every_when(self, *, healthy: bool) -> float:
        if healthy and not self.polled_sources:
            return self.config.reconcile_interval
        return self.config.poll_interval

    def detail(self) -> dict[str, object]:
        if self.webhooks is None:
            return {}
        status = self.webhooks.status()
        out: dict[str, object] = {"webhooks": "healthy" if status.healthy else "fallback"}
        if status.reason:
            out["webhooks_reason"] = status.reason
        if status.checked_at is not None:
            out["webhooks_checked_at"] = iso(status.checked_at)
        return out


def read_observations(
    source: ObservationSource | None, wanted: list[tuple[str, str]]
) -> tuple[dict[tuple[str, str], list[Observation]], dict[str, str]]:
    """The live observations, and the sources that could not be read (their outage, not
    MLflow's: the registry poll stands and the policy gets no observations)."""
    if source is None:
        return {}, {}
    try:
        return source.observations(wanted), {}
    except ObservationsUnavailable as exc:
        return exc.found, unavailable(exc)  # partial: the sources that answered


def _record_success(state: StateStore, metrics: Metrics | None, at: datetime) -> None:
    """When MLflow last answered: in the state DB (for /metrics after a restart; never
    fatal) and the gauge."""
    with contextlib.suppress(StateError):
        state.set_meta(META_LAST_POLL, iso(at))
    if metrics is not None:
        metrics.last_poll_success.labels(backend="mlflow").set(at.timestamp())


class _HintedReads:
    """One-model reads of the hinted models on the poll thread, at most one per
    HINT_MIN_GAP: a stream of reports must not turn into back-to-back reads of MLflow.
    ``source``: observation sources of their own, so the poll's keep their cache of every
    model (a FeedbackReader drops what it was not asked for)."""

    def __init__(
        self,
        models: Sequence[str],
        registry: Registry,
        source: ObservationSource | None,
        hints: Hints,
        clock: Clock,
        stop: threading.Event,
    ) -> None:
        self.models, self.registry, self.source = models, registry, source
        self.hints, self.clock, self.stop = hints, clock, stop
        self._started = -HINT_MIN_GAP

    def read(self) -> PollResult | None:
        gap = HINT_MIN_GAP - (time.monotonic() - self._started)
        if self.stop.is_set() or (gap > 0 and self.stop.wait(gap)):
            return None
        self._started = time.monotonic()
        names = {n for n in self.hints.drain() if matches(n, self.models)}
        if not names:
            return None
        try:
            snaps = [s for n in sorted(names) if (s := self.registry.model_snapshot(n))]
            wanted = [(s.name, s.production) for s in snaps if s.production is not None]
            obs, down = read_observations(self.source, wanted)
        except (Exception, stopping.Stopping) as exc:
            # A hint is only a hint: the next poll reads the truth (and reports an outage).
            log.warning("hinted_read_failed", models=sorted(names), error=str(exc))
            return None
        if down:
            log.warning("hinted_read_partial", models=sorted(names), sources_down=sorted(down))
        at = self.clock.now()
        return PollResult(at, snaps, obs, only=frozenset(names), observations_down=down)


class Monitor:
    """The daemon component. Tests call ``poll_once()`` and ``tick()`` with a fake clock.

    Implements :class:`watcher.ports.Verdicts` for rollback."""

    name = "monitor"

    def __init__(
        self,
        config: MonitorConfig,
        state: StateStore,
        registry: Registry,
        observations: ObservationSource | None,
        alerts: AlertSink | None,
        *,
        clock: Clock | None = None,
        metrics: Metrics | None = None,
        moves: ProductionMoves | None = None,
        use_scheduler: bool = True,
        retry_delay: float = RETRY_DELAY,
        receiver: Receiver | None = None,
        webhooks: WebhookHealth | None = None,
        hint_source: ObservationSource | None = None,
        observation_sources: Iterable[str] = (),
    ) -> None:
        self.config = config
        self.state = state
        self.registry = registry
        self.source = observations
        self.clock = clock or SystemClock()
        self.metrics = metrics
        self.use_scheduler = use_scheduler
        self.retry_delay = retry_delay
        self.stop_event = threading.Event()
        names = tuple(observation_sources)  # sources with an outage of their own
        self.changes = RegistryChanges(config.models, state, alerts, metrics)
        self.accuracy = AccuracyWatch(config, state, alerts, self.clock, metrics, moves)
        self._outage = Outage(MLFLOW, config.mlflow_down_alert_after, state, alerts)
        self._sources_down = SourceOutages(names, config.prometheus.down_alert_after, state, alerts)
        self._overruns = _Overruns(config.poll_interval, metrics)
        self._schedule = _Schedule(config.poll_interval, self._overruns.skipped)
        self._results: queue.Queue[PollResult] = queue.Queue()
        self._wake: Callable[[], None] | None = None
        self._first_poll = OncePerCause()
        self._last_ok: datetime | None = None
        self._last_poll: PollResult | None = None
        self.receiver = receiver
        self.webhooks = webhooks
        self.hints = receiver.hints if receiver is not None else Hints()
        self._hinted = _HintedReads(
            config.models,
            registry,
            hint_source or observations,
            self.hints,
            self.clock,
            self.stop_event,
        )
        self._hooks = _Hooks(config, self._schedule, self.hints, webhooks, bool(names))

    # Lifecycle ------------------------------------------------------------

    def bind_wake(self, wake: Callable[[], None]) -> None:
        """The daemon's wake-up: a poll result is handled at once, not after the loop's
        sleep, and a changed verdict is read by rollback in the next pass whatever the
        component order (a breach reaches the rollback policy in milliseconds)."""
        self._wake = wake
        if self.receiver is not None:
            self.receiver.bind_wake(wake)

    def start(self) -> None:
        self.changes.load()
        self.accuracy.load()
        self._restore_last_poll()
        if self.use_scheduler:
            self._schedule.start(self.poll_once)

    def stop(self) -> None:
        self.stop_event.set()
        self._schedule.stop()
        if self.receiver is not None:
            self.receiver.close()

    def warming_up(self) -> bool:
        """True until the first poll's result (or its failure) has been handled: the daemon
        says READY after it (the first poll imports mlflow: seconds, and most of the RSS)."""
        return self._last_poll is None and self._schedule.running()

    # Polling (scheduler thread) -----------------------------------------------

    def poll_once(self) -> PollResult | None:
        """Read the registry and observations once; queue the result for tick()."""
        if self.stop_event.is_set():
            return None
        started = time.monotonic()
        calls_before = int(getattr(self.registry, "calls", 0))
        result: PollResult | None = None
        for attempt in (1, 2):
            try:
                snaps = self.registry.snapshot(self.config.models)
                wanted = [(s.name, s.production) for s in snaps if s.production is not None]
                obs, down = read_observations(self.source, wanted)
                result = PollResult(self.clock.now(), snaps, obs, observations_down=down)
                break
            except RegistryUnavailable as exc:
                result = PollResult(self.clock.now(), None, error=str(exc))
                if attempt == 1 and not self.stop_event.wait(self.retry_delay):
                    continue
                break
            except RegistryError as exc:
                result = PollResult(self.clock.now(), None, error=str(exc))
                break
            except stopping.Stopping:
                return None  # the daemon is stopping: a poll cut short is not an error
            except Exception as exc:  # never let the job die silently
                result = PollResult(self.clock.now(), None, error=f"{type(exc).__name__}: {exc}")
                break
        assert result is not None  # noqa: S101
        if self.webhooks is not None and result.snapshots is not None:
            self.webhooks.check()  # after a full poll: MLflow answers
        calls = int(getattr(self.registry, "calls", 0)) - calls_before
        seconds = time.monotonic() - started
        result = replace(result, seconds=seconds, calls=calls)
        self._results.put(result)
        if self._wake is not None:
            self._wake()
        return result

    def hint(self, model: str) -> None:
        """Thread-safe: ``model`` changed (a webhook delivery, an intake report): read it
        afresh on the poll thread now, not at the next interval (hints coalesce)."""
        self.hints.put(model)
        if self._wake is not None:
            self._wake()

    # Deciding (daemon thread) ------------------------------------------------

    def read_hinted(self) -> PollResult | None:
        """Read afresh the models hinted at (poll thread); queue it for tick()."""
        result = self._hinted.read()
        if result is not None:
            self._results.put(result)
            if self._wake is not None:
                self._wake()
        return result

    def tick(self) -> float | None:
        now = self.clock.now()
        self._overruns.check_started()
        self._hooks.follow_hints(self.read_hinted)
        changed = handled = False
        while True:
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                break
            changed |= self._handle(result, now)
            handled = True
        self._hooks.follow_cadence()
        due = self.accuracy.due
        if not handled and due is not None and now >= due:
            changed |= self.accuracy.evaluate(now)  # `for` / keep_firing_for elapsed
        if changed and self._wake is not None:
            self._wake()  # a new verdict: one more pass, so rollback reads it now
        due = self.accuracy.due
        return None if due is None else max(0.0, (due - now).total_seconds())

    def _handle(self, result: PollResult, now: datetime) -> bool:
        """One poll's result; true when a verdict changed."""
        if result.only is not None:
            return self._handle_hinted(result, now)
        self._last_poll = result
        self._overruns.check_ended(result.seconds)
        if result.snapshots is None:
            if self.metrics is not None:
                self.metrics.poll_errors.labels(backend="mlflow").inc()
            self._outage.failed(result.error, result.at, now)
            return False
        self._outage.reachable(result.at, now)
        self._sources_down.polled(result.observations_down, result.at, now, self.metrics)
        self._last_ok = result.at
        if self._first_poll.first():  # the first poll includes `import mlflow`: say when done
            log.info(
                "registry_first_poll",
                models=len(result.snapshots),
                seconds=round(result.seconds, 3),
            )
        _record_success(self.state, self.metrics, result.at)
        self.changes.apply(result.snapshots, now)
        production = {s.name: s.production for s in result.snapshots}
        self.accuracy.observe(production, result.observations, result.at, partial=result.partial)
        return self.accuracy.evaluate(now)

    def _handle_hinted(self, result: PollResult, now: datetime) -> bool:
        """A webhook hint's read: the diff and the policy of those models only."""
        snaps = result.snapshots or []
        self.changes.apply(snaps, now, only=result.only)
        production = {s.name: s.production for s in snaps}
        self.accuracy.observe(
            production, result.observations, result.at, only=result.only, partial=result.partial
        )
        return self.accuracy.evaluate(now)

    def _restore_last_poll(self) -> None:
        last_ok = self.state.get_meta(META_LAST_POLL)
        if self.metrics is not None and last_ok is not None:
            at = datetime.fromisoformat(last_ok).timestamp()
            self.metrics.last_poll_success.labels(backend="mlflow").set(at)

    # Reporting (ports.Verdicts, status) -----------------------------------------

    def verdicts(self) -> Mapping[str, Decision]:
        """The latest decision per model: a read-only copy of frozen values."""
        return self.accuracy.verdicts()

    def observations(self, model: str, version: str) -> list[Observation]:
        """The last poll's live-accuracy observations of one version ([] if not fetched)."""
        return self.accuracy.observations(model, version)

    def policy_state(self, model: str) -> PolicyState | None:
        """The accuracy state of ``model``'s Production version (for rollback and status)."""
        return self.accuracy.policy_state(model)

    def health(self) -> Health:
        last = self._last_poll
        down = self._outage.since
        detail: dict[str, object] = {
            "mlflow_reachable": down is None and last is not None,
            "models": self.accuracy.models(),
            "last_success": iso(self._last_ok) if self._last_ok else None,
        }
        if down is not None:
            detail["mlflow_down_since"] = iso(down)
            detail["error"] = self._outage.error
        if last is not None:
            detail["poll_seconds"] = round(last.seconds, 3)
            detail["mlflow_calls_per_poll"] = last.calls
        if self._schedule.job_errors:
            detail["job_errors"] = self._schedule.job_errors
        detail.update(self._sources_down.detail(last is not None))
        if (overruns := self._overruns.ongoing()) is not None:
            detail["poll_overruns"] = overruns
        if firing := self.accuracy.firing():
            detail["accuracy_firing"] = firing
        detail.update(self._hooks.detail())
        # MLflow being down is reported (detail, alert) but is not a reason for systemd to
        # restart us: restarting cannot bring MLflow back. A dead poll thread is.
        alive = not self.use_scheduler or self._schedule.running()
        # A source of live observations down blinds the live-metric policy: not ready either.
        ready = down is None and not self._sources_down.down()
        return Health(self.name, alive, detail, ready=ready)
