"""Registry monitoring: poll MLflow on a schedule, decide and notify in ``tick()``.

The APScheduler job (one worker thread, so the MlflowClient lives in one thread)
only reads the registry and the live-accuracy observations and puts the result
on a queue. ``tick()`` (the daemon loop) turns results into history events, info
notifications, policy decisions and alerts. MLflow being unreachable is logged
once per outage, shown in health, and alerted after ``mlflow_down_alert_after``;
the daemon keeps going and resumes when MLflow returns.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from alerts.model import Alert, Notification, NotificationKind, make_alert
from watcher.errors import RegistryError, RegistryUnavailable, StateError
from watcher.monitor.policy import (
    Decision,
    Observation,
    PolicyConfig,
    PolicyState,
    Status,
    evaluate,
    observation_problem,
)
from watcher.ports import ARCHIVED_STAGE, ModelSnapshot, Registry, matches
from watcher.runtime import stopping
from watcher.runtime.clock import Clock, SystemClock
from watcher.runtime.component import Health
from watcher.runtime.logging import get_logger
from watcher.runtime.state import META_LAST_POLL, META_POLICY, StateStore, iso

if TYPE_CHECKING:
    from watcher.backends.mlflow_registry import MlflowRegistry
    from watcher.config import Config, MonitorConfig
    from watcher.runtime.metrics import Metrics

log = get_logger("watcher.monitor.poll")

ACCURACY_SOURCE = "monitor.accuracy"
MLFLOW_SOURCE = "monitor.mlflow"
ACCURACY_ALERT = "ModelAccuracyLow"
MLFLOW_DOWN_ALERT = "MlflowUnreachable"
RETRY_DELAY = 1.0  # our own retry inside a cycle, after MLflow's small retry budget
STOP_GRACE = 0.2  # a poll still running then is read-only: left to end with the process


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


class AlertSink(Protocol):
    """What the monitor needs from alerts.Dispatcher."""

    def process(
        self, source: str, active: Iterable[Alert], now: datetime
    ) -> list[Notification]: ...

    def enqueue(self, notifications: Iterable[Notification], now: datetime) -> int: ...


class ObservationSource(Protocol):
    def observations(
        self, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Observation]]: ...


@dataclass(frozen=True, slots=True)
class PollResult:
    at: datetime
    snapshots: list[ModelSnapshot] | None  # None: the poll failed
    observations: dict[tuple[str, str], list[Observation]] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    calls: int = 0


def policy_config(cfg: MonitorConfig) -> PolicyConfig:
    return PolicyConfig(
        min_accuracy=cfg.min_accuracy,
        window=cfg.window,
        min_samples=cfg.min_samples,
        for_=cfg.for_,
        keep_firing_for=cfg.keep_firing_for,
    )


@dataclass
class _Known:
    production: str | None
    stages: dict[str, str]  # version -> stage


class Monitor:
    """The daemon component. Tests call ``poll_once()`` and ``tick()`` with a fake clock."""

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
        use_scheduler: bool = True,
        retry_delay: float = RETRY_DELAY,
    ) -> None:
        self.config = config
        self.policy = policy_config(config)
        self.state = state
        self.registry = registry
        self.source = observations
        self.alerts = alerts
        self.clock = clock or SystemClock()
        self.metrics = metrics
        self.use_scheduler = use_scheduler
        self.retry_delay = retry_delay
        self.stop_event = threading.Event()
        self._results: queue.Queue[PollResult] = queue.Queue()
        self._wake: Callable[[], None] | None = None
        self._scheduler: Any = None
        self._worker: _DaemonWorker | None = None
        self._job_errors = 0
        self._overruns = 0  # polls skipped (or missed) because one was still running
        self._overruns_seen = 0  # … up to the end of the last overrun episode
        self._overrun_from: int | None = None  # … up to the start of the current one
        self._known: dict[str, _Known] = {}
        self._production: dict[str, str | None] = {}
        self._observations: dict[tuple[str, str], list[Observation]] = {}
        self._policy: dict[str, PolicyState] = {}
        self.decisions: dict[str, Decision] = {}
        self._live_saved: dict[str, tuple[float | None, int]] = {}
        self._skipped: set[tuple[str, str, Observation]] = set()  # reported once each
        self._due: datetime | None = None
        self._down_since: datetime | None = None
        self._down_error: str | None = None
        self._last_ok: datetime | None = None
        self._last_poll: PollResult | None = None
        self._polled_once = False

    # Lifecycle ------------------------------------------------------------

    def bind_wake(self, wake: Callable[[], None]) -> None:
        """The daemon's wake-up: a poll result is handled at once, not after the loop's
        sleep (a breach reaches the rollback policy in milliseconds)."""
        self._wake = wake

    def start(self) -> None:
        self._load()
        if not self.use_scheduler:
            return
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
        from apscheduler.executors.pool import BasePoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        class OneDaemonThread(BasePoolExecutor):  # type: ignore[misc]  # untyped base
            def __init__(self, pool: _DaemonWorker) -> None:
                super().__init__(pool)

        interval = self.config.poll_interval
        # One worker thread: the MlflowClient is used from that thread only. A daemon thread,
        # so a poll stuck in a slow MLflow call cannot hold up shutdown.
        self._worker = _DaemonWorker()
        sched = BackgroundScheduler(
            executors={"default": OneDaemonThread(self._worker)}, timezone=UTC
        )
        sched.add_job(
            self.poll_once,
            "interval",
            seconds=interval,
            id="registry-poll",
            next_run_time=datetime.now(UTC),  # first poll at start, not one interval later
            misfire_grace_time=max(1, int(interval / 2)),
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
            self._job_errors += 1
            return
        self._overruns += 1
        if self.metrics is not None:
            self.metrics.poll_overruns.inc()

    def stop(self) -> None:
        self.stop_event.set()
        if self._scheduler is not None:
            # Jobs check the stop event between MLflow calls; give a running poll a short
            # grace, then leave it (read-only) to die with the process.
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._worker is not None:
            self._worker.join(STOP_GRACE)
            self._worker = None

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
                obs = self.source.observations(wanted) if self.source is not None else {}
                result = PollResult(self.clock.now(), snaps, obs)
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
        calls = int(getattr(self.registry, "calls", 0)) - calls_before
        result = PollResult(
            result.at,
            result.snapshots,
            result.observations,
            result.error,
            time.monotonic() - started,
            calls,
        )
        self._results.put(result)
        if self._wake is not None:
            self._wake()
        return result

    # Deciding (daemon thread) ------------------------------------------------

    def tick(self) -> float | None:
        now = self.clock.now()
        if self._overrun_from is None and self._overruns > self._overruns_seen:
            self._overrun_from = self._overruns_seen
            log.warning(
                "poll_overrun",
                poll_interval=self.config.poll_interval,
                hint="a registry poll takes longer than monitor.poll_interval; the next ones are"
                " skipped (counted in watcher_poll_overruns_total) until polls are quick again",
            )
        handled = False
        while True:
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                break
            self._handle(result, now)
            handled = True
        if not handled and self._due is not None and now >= self._due:
            self._evaluate(now)  # `for` / keep_firing_for elapsed without a new poll
        if self._due is None:
            return None
        return max(0.0, (self._due - now).total_seconds())

    def _handle(self, result: PollResult, now: datetime) -> None:
        self._last_poll = result
        if self._overrun_from is not None and result.seconds < self.config.poll_interval:
            log.info(
                "poll_overrun_ended",
                skipped=self._overruns - self._overrun_from,
                poll_seconds=round(result.seconds, 3),
            )
            self._overrun_from = None
            self._overruns_seen = self._overruns
        if result.snapshots is None:
            self._poll_failed(result, now)
            return
        if self._down_since is not None:
            outage = (result.at - self._down_since).total_seconds()
            log.info("mlflow_reachable_again", outage_seconds=round(outage, 1))
            self.state.record(
                "registry.reachable",
                f"MLflow reachable again after {outage:.0f}s",
                payload={"outage_seconds": outage},
                at=now,
            )
            self._down_since = None
            self._down_error = None
        self._last_ok = result.at
        if not self._polled_once:  # the first poll includes `import mlflow`: say when it is done
            log.info(
                "registry_first_poll",
                models=len(result.snapshots),
                seconds=round(result.seconds, 3),
            )
        with contextlib.suppress(StateError):  # only for /metrics after a restart: never fatal
            self.state.set_meta(META_LAST_POLL, iso(result.at))
        if self.metrics is not None:
            self.metrics.last_poll_success.labels(backend="mlflow").set(result.at.timestamp())
        self._process_mlflow_alert(now)
        self._diff(result.snapshots, now)
        self._production = {s.name: s.production for s in result.snapshots}
        self._observations = self._usable(result.observations, result.at)
        self._polled_once = True
        self._evaluate(now)

    def _usable(
        self, observations: dict[tuple[str, str], list[Observation]], now: datetime
    ) -> dict[tuple[str, str], list[Observation]]:
        """Leave out observations the policy cannot use, whatever their source: one
        stamped further in the future than the clock skew would stay the newest in the
        window for ever. Each is logged once."""
        out: dict[tuple[str, str], list[Observation]] = {}
        for (model, version), obs in observations.items():
            out[(model, version)] = kept = []
            for o in obs:
                problem = observation_problem(o.accuracy, o.samples, o.at, now)
                if problem is None:
                    kept.append(o)
                elif (model, version, o) not in self._skipped:
                    self._skipped.add((model, version, o))
                    log.warning("observation_skipped", model=model, version=version, reason=problem)
        return out

    def _poll_failed(self, result: PollResult, now: datetime) -> None:
        if self.metrics is not None:
            self.metrics.poll_errors.labels(backend="mlflow").inc()
        if self._down_since is None:
            self._down_since = result.at
            # Once per outage: the recovery line carries the duration.
            log.warning("mlflow_unreachable", error=result.error, since=iso(result.at))
            self.state.record(
                "registry.unreachable",
                f"MLflow unreachable: {result.error}",
                payload={"error": result.error},
                at=now,
            )
        self._down_error = result.error
        self._process_mlflow_alert(now)

    def _process_mlflow_alert(self, now: datetime) -> None:
        if self.alerts is None:
            return
        active: list[Alert] = []
        if self._down_since is not None:
            down_for = (now - self._down_since).total_seconds()
            if down_for < self.config.mlflow_down_alert_after:
                # Undecided, not recovered: after a restart mid-outage the alert persisted as
                # firing must not be resolved (and re-fired a moment later) by this early poll.
                return
            active.append(
                make_alert(
                    MLFLOW_DOWN_ALERT,
                    starts_at=self._down_since,
                    severity="critical",
                    summary=f"MLflow unreachable for {down_for:.0f}s",
                    description=str(self._down_error or ""),
                    component="monitor",
                )
            )
        self.alerts.process(MLFLOW_SOURCE, active, now)

    # Registry changes ---------------------------------------------------------

    def _load(self) -> None:
        rows = self.state.conn.execute(
            "SELECT model, production_version, versions FROM registry_models"
        ).fetchall()
        for model, prod, versions in rows:
            stages = json.loads(versions)
            self._known[str(model)] = _Known(prod, stages if isinstance(stages, dict) else {})
        raw = self.state.get_meta(META_POLICY)
        if raw:
            for model, data in json.loads(raw).items():
                self._policy[model] = PolicyState.from_json(data)
        self._restore_gauges()

    def _restore_gauges(self) -> None:
        """What the state DB knows, on /metrics from the first scrape after a restart (the
        gauges are otherwise set only when a poll sees a change)."""
        if self.metrics is None:
            return
        last_ok = self.state.get_meta(META_LAST_POLL)
        if last_ok is not None:
            at = datetime.fromisoformat(last_ok).timestamp()
            self.metrics.last_poll_success.labels(backend="mlflow").set(at)
        # A rollback (`watcher rollback`, by hand) that moved Production after the last poll
        # saw it is newer than the poll's row: show what it left.
        rows = self.state.conn.execute(
            "SELECT m.model, COALESCE((SELECT j.to_version FROM rollback_journal j"
            "  WHERE j.model = m.model AND j.step IN ('moved', 'tagged', 'done')"
            "  AND j.updated_at >= m.observed_at ORDER BY j.id DESC LIMIT 1),"
            " m.production_version), m.production_version, m.live_accuracy"
            " FROM registry_models m"
        ).fetchall()
        for model, prod, polled, polled_live in rows:
            live = polled_live if prod == polled else None  # it was the polled version's
            self.metrics.set_production(str(model), prod)
            if prod is None:
                continue
            policy = self._policy.get(str(model))
            if policy is None or policy.version != str(prod):
                # Not evaluated since it became Production: what the policy says of a
                # version before its first evaluation, until the first poll.
                self.metrics.set_alert_state(str(model), Status.INCONCLUSIVE.value)
                continue
            shown = "ok" if policy.status is Status.RESOLVED else policy.status.value
            self.metrics.set_alert_state(str(model), shown)
            if live is not None:
                self.metrics.live_accuracy.labels(model=str(model)).set(float(live))

    def _changes(
        self, snaps: Sequence[ModelSnapshot]
    ) -> tuple[list[tuple[str, str, str, str | None]], dict[str, _Known | None]]:
        """History events (kind, model, message, version) and the rows to store."""
        events: list[tuple[str, str, str, str | None]] = []
        seen: set[str] = set()
        changed: dict[str, _Known | None] = {}
        for snap in snaps:
            seen.add(snap.name)
            stages = {v: info.stage for v, info in snap.versions.items()}
            new = _Known(snap.production, stages)
            old = self._known.get(snap.name)
            if old is None:
                prod = f"Production v{snap.production}" if snap.production else "no Production"
                events.append(
                    (
                        "registry.model_watched",
                        snap.name,
                        f"watching {snap.name}: {len(stages)} version(s), {prod}",
                        snap.production,
                    )
                )
                changed[snap.name] = new
                continue
            if old == new:
                continue
            changed[snap.name] = new
            events.extend(_version_events(snap.name, old, new))
        for name in list(self._known):
            if name not in seen and matches(name, self.config.models):
                events.append(("registry.model_deleted", name, f"{name} was deleted", None))
                changed[name] = None
        return events, changed

    def _diff(self, snaps: Sequence[ModelSnapshot], now: datetime) -> None:
        events, changed = self._changes(snaps)
        if not changed:
            return
        ids: list[tuple[int, str, str, str, str | None]] = []
        with self.state.transaction() as tx:
            for kind, model, message, version in events:
                eid = self.state.record(
                    kind, message, model=model, version=version, at=now, conn=tx
                )
                ids.append((eid, kind, model, message, version))
            for name, known in changed.items():
                if known is None:
                    tx.execute("DELETE FROM registry_models WHERE model = ?", (name,))
                    continue
                tx.execute(
                    "INSERT INTO registry_models (model, production_version, versions, observed_at,"
                    " training_accuracy) VALUES (?, ?, ?, ?, ?) ON CONFLICT(model) DO UPDATE SET"
                    " production_version = excluded.production_version,"
                    " versions = excluded.versions, observed_at = excluded.observed_at,"
                    " training_accuracy = excluded.training_accuracy",
                    (
                        name,
                        known.production,
                        json.dumps(known.stages, sort_keys=True),
                        iso(now),
                        _training_accuracy(snaps, name, known.production),
                    ),
                )
        for name, known in changed.items():
            if known is None:
                self._known.pop(name, None)
            else:
                self._known[name] = known
            if self.metrics is not None:
                self.metrics.set_production(name, None if known is None else known.production)
        for _eid, kind, model, message, version in ids:
            log.info("registry_event", kind=kind, model=model, version=version, message=message)
        self._notify_info([i for i in ids if i[1] != "registry.model_watched"], now)

    def _notify_info(
        self, events: Sequence[tuple[int, str, str, str, str | None]], now: datetime
    ) -> None:
        if self.alerts is None or not events:
            return
        notes = []
        for eid, kind, model, message, version in events:
            labels = {"model": model, "event": kind}
            if version is not None:
                labels["version"] = version
            alert = make_alert(
                _INFO_ALERTS.get(kind, "ModelRegistryEvent"),
                starts_at=now,
                severity="info",
                summary=message,
                **labels,
            )
            # The event id makes each notification unique in the outbox (idempotent enqueue).
            notes.append(Notification(alert, NotificationKind.FIRING, sequence=eid))
        self.alerts.enqueue(notes, now)

    # Policy -------------------------------------------------------------------

    def _evaluate(self, now: datetime) -> None:
        active: list[Alert] = []
        due: list[datetime] = []
        policies: dict[str, PolicyState] = {}
        for model, version in sorted(self._production.items()):
            if version is None:
                continue
            state = self._policy.get(model)
            if state is None or state.version != version:
                state = PolicyState(version)  # a newly promoted version starts clean
            obs = self._observations.get((model, version), [])
            decision = evaluate(state, obs, self.policy, now)
            self._transition(model, state, decision, now)
            policies[model] = decision.state
            self.decisions[model] = decision
            if decision.next_check is not None:
                due.append(decision.next_check)
            if decision.firing:
                active.append(self._accuracy_alert(model, decision))
            self._save_live(model, decision)
            if self.metrics is not None:
                shown = "ok" if decision.status is Status.RESOLVED else decision.status.value
                self.metrics.set_alert_state(model, shown)
                if decision.accuracy is not None:
                    self.metrics.live_accuracy.labels(model=model).set(decision.accuracy)
        for model in set(self.decisions) - set(policies):
            del self.decisions[model]
        if policies != self._policy:
            self._policy = policies
            self.state.set_meta(
                META_POLICY, json.dumps({m: s.to_json() for m, s in sorted(policies.items())})
            )
        self._due = min(due) if due else None
        if self.alerts is not None:
            self.alerts.process(ACCURACY_SOURCE, active, now)

    def _save_live(self, model: str, decision: Decision) -> None:
        """Keep the latest windowed live accuracy where `watcher status` reads it."""
        live = (decision.accuracy, decision.samples)
        if self._live_saved.get(model) == live:
            return
        self._live_saved[model] = live
        with self.state.transaction() as tx:
            tx.execute(
                "UPDATE registry_models SET live_accuracy = ?, live_samples = ? WHERE model = ?",
                (decision.accuracy, decision.samples, model),
            )

    def _transition(self, model: str, old: PolicyState, decision: Decision, now: datetime) -> None:
        new = decision.status
        if new is old.status:
            return
        version = decision.state.version
        message = f"{model} v{version} live accuracy {new.value}: {decision.reason}"
        log.info(
            "accuracy_state",
            model=model,
            version=version,
            state=new.value,
            previous=old.status.value,
            accuracy=decision.accuracy,
            samples=decision.samples,
        )
        if new not in (Status.PENDING, Status.FIRING, Status.RESOLVED):
            return  # the history keeps alert transitions; ok/inconclusive are in status
        self.state.record(
            f"monitor.accuracy_{new.value}",
            message,
            model=model,
            version=version,
            payload={"accuracy": decision.accuracy, "samples": decision.samples},
            at=now,
        )

    def _accuracy_alert(self, model: str, decision: Decision) -> Alert:
        version = decision.state.version
        acc = "n/a" if decision.accuracy is None else f"{decision.accuracy:.4f}"
        return make_alert(
            ACCURACY_ALERT,
            starts_at=decision.state.firing_since or self.clock.now(),
            severity="critical",
            summary=f"{model} v{version} live accuracy {acc} below {self.policy.min_accuracy}",
            description=decision.reason,
            model=model,
            version=version,
        )

    # Reporting ----------------------------------------------------------------

    def observations(self, model: str, version: str) -> list[Observation]:
        """The last poll's live-accuracy observations of one version ([] if not fetched)."""
        return list(self._observations.get((model, version), []))

    def policy_state(self, model: str) -> PolicyState | None:
        """The accuracy state of ``model``'s Production version (for rollback and status)."""
        return self._policy.get(model)

    def health(self) -> Health:
        last = self._last_poll
        detail: dict[str, object] = {
            "mlflow_reachable": self._down_since is None and last is not None,
            "models": len(self._production),
            "last_success": iso(self._last_ok) if self._last_ok else None,
        }
        if self._down_since is not None:
            detail["mlflow_down_since"] = iso(self._down_since)
            detail["error"] = self._down_error
        if last is not None:
            detail["poll_seconds"] = round(last.seconds, 3)
            detail["mlflow_calls_per_poll"] = last.calls
        if self._job_errors:
            detail["job_errors"] = self._job_errors
        if self._overrun_from is not None:
            detail["poll_overruns"] = self._overruns - self._overrun_from
        firing = sorted(m for m, d in self.decisions.items() if d.firing)
        if firing:
            detail["accuracy_firing"] = firing
        # MLflow being down is reported (detail, alert) but is not a reason for systemd to
        # restart us: restarting cannot bring MLflow back. A dead poll thread is.
        alive = not self.use_scheduler or (
            self._scheduler is not None and bool(self._scheduler.running)
        )
        return Health(self.name, alive, detail, ready=self._down_since is None)


_INFO_ALERTS = {
    "registry.production_changed": "ModelProductionChanged",
    "registry.version_created": "ModelVersionCreated",
    "registry.version_archived": "ModelVersionArchived",
    "registry.version_deleted": "ModelVersionDeleted",
    "registry.model_deleted": "ModelDeleted",
}


def _training_accuracy(
    snaps: Sequence[ModelSnapshot], name: str, version: str | None
) -> float | None:
    """The `accuracy` tag the pipeline wrote on the Production version, if any."""
    for snap in snaps:
        if snap.name == name and version is not None and version in snap.versions:
            raw = snap.versions[version].tags.get("accuracy")
            try:
                return float(raw) if raw is not None else None
            except ValueError:
                return None
    return None


def _version_events(name: str, old: _Known, new: _Known) -> list[tuple[str, str, str, str | None]]:
    out: list[tuple[str, str, str, str | None]] = []
    for v in sorted(set(new.stages) - set(old.stages), key=int):
        out.append(("registry.version_created", name, f"{name} v{v} registered", v))
    for v in sorted(set(old.stages) - set(new.stages), key=int):
        out.append(("registry.version_deleted", name, f"{name} v{v} was deleted", v))
    for v in sorted(set(old.stages) & set(new.stages), key=int):
        if new.stages[v] == ARCHIVED_STAGE and old.stages[v] != ARCHIVED_STAGE:
            out.append(("registry.version_archived", name, f"{name} v{v} was archived", v))
    if old.production != new.production:
        was = f"v{old.production}" if old.production else "none"
        if new.production is None:
            msg = f"{name} has no Production version (was {was})"
        else:
            msg = f"{name} v{new.production} is now Production (was {was})"
        out.append(("registry.production_changed", name, msg, new.production))
    return out


def build_monitor(
    config: Config, state: StateStore, alerts: AlertSink | None, registry: MlflowRegistry
) -> Monitor:
    """The real thing: the process's MLflow adapter, a feedback reader, APScheduler poll."""
    from watcher.backends.mlflow_observations import FeedbackReader
    from watcher.runtime.metrics import METRICS

    return Monitor(
        config.monitor, state, registry, FeedbackReader(registry), alerts, metrics=METRICS
    )
