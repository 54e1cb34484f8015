"""The one place that builds real adapters and components from the config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

    from watcher.backends.mlflow_registry import MlflowRegistry
    from watcher.config import Config
    from watcher.data.watcher import DataWatcher
    from watcher.monitor.evaluator import Evaluator
    from watcher.monitor.poll import Monitor
    from watcher.ports import AlertSink, ObservationSource, RunHooks, Trigger
    from watcher.runtime.clock import Clock
    from watcher.runtime.component import Component
    from watcher.runtime.routes import Route
    from watcher.runtime.state import StateStore
    from watcher.trigger.delivery import Delivery


def build_components(
    config: Config, state: StateStore, registry: MlflowRegistry | None = None
) -> list[Component]:
    """Components in start order (stopped in reverse). ``registry``: the process's MLflow
    adapter when the caller has one already (the demo); else it is built here."""
    from watcher.backends.mlflow_registry import MlflowRegistry
    from watcher.rollback.auto import AutoRollback
    from watcher.runtime.alerting import Alerting
    from watcher.runtime.clock import SystemClock
    from watcher.runtime.health import CoreChecks

    config.watch.data_dir.mkdir(parents=True, exist_ok=True)
    clock = SystemClock()
    # Alerting first: the others raise alerts through it.
    alerting = Alerting(config, state, clock)
    # One MLflow adapter for every component and thread (the poll thread, its read pool,
    # the main loop): it is thread-safe and counts calls per thread.
    registry = registry or MlflowRegistry.from_config(config)
    drift = build_drift(config, state, registry, clock, alerting)
    data, delivery = build_data_side(config, state, hooks=drift, clock=clock)
    monitor = build_monitor(config, state, registry, alerting)
    rollback = AutoRollback(
        config.rollback,
        config.monitor.policy_for,
        monitor,
        registry,
        state,
        config.state.dir,
        clock,
        alerting,
        retrain=delivery,
    )
    components: list[Component] = [
        alerting,
        CoreChecks(config.watch.data_dir, state, queued=data.outbox.depth),
        data,
        delivery,
        monitor,
        rollback,
    ]
    if config.monitor.feedback_dir is not None:
        components.append(build_evaluator(config, state, registry, clock=clock))
    if config.http.listen:
        # Last, so it starts after and stops before what it reports on.
        from watcher.runtime.http import HttpEndpoint

        routes = build_routes(config, monitor)
        components.append(HttpEndpoint(config.http.listen, components, routes=routes))
    return components


def build_routes(config: Config, monitor: Monitor) -> list[Route]:
    """The write endpoints; each exists only when its secret is configured."""
    routes: list[Route] = [monitor.receiver] if monitor.receiver is not None else []
    if config.http.token is not None:
        from watcher.monitor.intake import AccuracyIntake

        token = config.http.token.get_secret_value()
        intake = AccuracyIntake(
            token,
            config.monitor.models,
            config.state.dir,
            monitor.hint,
            watched_metric=lambda model: config.monitor.policy_for(model).metric,
        )
        routes.append(intake)
    return routes


def build_drift(
    config: Config, state: StateStore, registry: MlflowRegistry, clock: Clock, alerts: AlertSink
) -> list[RunHooks]:
    """The drift hooks, or none on a lean install (no [pipeline] extra: no pandas, scipy
    to read and score the data; explicit drift.* keys were refused at start)."""
    from watcher.extras import INSTALL_HINT, pipeline_installed

    if not pipeline_installed():
        from watcher.runtime.logging import get_logger

        get_logger("watcher.drift").info("drift_checks_off", reason=f"needs {INSTALL_HINT}")
        return []
    from watcher.backends.mlflow_models import MlflowModels
    from watcher.drift.watch import DriftWatch

    return [DriftWatch(config, state, registry, MlflowModels(registry), clock, alerts)]


def build_monitor(
    config: Config, state: StateStore, registry: MlflowRegistry, alerts: AlertSink
) -> Monitor:
    """The registry and live-metric poll, reading MLflow through the process's adapter;
    with ``monitor.prometheus.url``, live metrics from Prometheus too."""
    from watcher.monitor.poll import Monitor
    from watcher.rollback.journal import JournalReader
    from watcher.runtime.clock import SystemClock
    from watcher.runtime.metrics import METRICS

    receiver = webhooks = None
    hooks = config.monitor.webhooks
    if hooks.secret is not None:  # registry webhooks: the receiver and their health
        from watcher.backends.mlflow_webhooks import MlflowWebhooks
        from watcher.monitor.webhook_health import WebhookHealth
        from watcher.monitor.webhooks import Receiver

        clock = SystemClock()
        secret = hooks.secret.get_secret_value()
        receiver = Receiver(
            secret, hooks.tolerance, config.monitor.models, config.state.dir, clock, metrics=METRICS
        )
        webhooks = WebhookHealth(
            MlflowWebhooks(registry),
            config.webhook_url,
            receiver.last_delivery,
            config.monitor.reconcile_interval,
            clock,
        )
    source, names = build_observations(config, registry)
    return Monitor(
        config.monitor,
        state,
        registry,
        source,
        alerts,
        metrics=METRICS,
        moves=JournalReader(state),  # a rollback after the last poll shows after a restart
        observation_sources=names,
        receiver=receiver,
        webhooks=webhooks,
        # Hinted reads want a few models: sources of their own, so the poll's keep their
        # cache of every model (a FeedbackReader drops what it was not asked for).
        hint_source=build_observations(config, registry)[0],
    )


def build_observations(
    config: Config, registry: MlflowRegistry
) -> tuple[ObservationSource, tuple[str, ...]]:
    """Every configured source of live observations as one, and the names of those whose
    outage is their own (not MLflow's): MLflow metrics (`watcher report-metric`, the
    evaluator), the daemon's intake, Prometheus."""
    from watcher.backends.mlflow_observations import FeedbackReader
    from watcher.monitor.sources import Combined

    sources: list[ObservationSource] = [FeedbackReader(registry)]
    names: tuple[str, ...] = ()
    if config.http.token is not None:  # the intake is on: its table is a source too
        from watcher.monitor.intake_store import IntakeObservations

        sources.append(IntakeObservations(config.state.dir, config.monitor.policy_for))
    if config.monitor.prometheus.url is not None:
        from watcher.backends.prometheus_observations import SOURCE, PrometheusObservations

        prometheus = PrometheusObservations.from_config(
            config.monitor.prometheus, lambda model: config.monitor.policy_for(model).metric
        )
        sources.append(prometheus)
        names = (SOURCE,)
    return (sources[0] if len(sources) == 1 else Combined(sources)), names


def build_evaluator(
    config: Config,
    state: StateStore,
    registry: MlflowRegistry,
    *,
    clock: Clock | None = None,
    observer_factory: Callable[[], BaseObserver] | None = None,
) -> Evaluator:
    """The built-in evaluator on the process's MLflow adapter (``monitor.feedback_dir``)."""
    from watcher.backends.mlflow_models import MlflowModels
    from watcher.backends.mlflow_observations import MlflowMetricReporter
    from watcher.monitor.evaluator import Evaluator

    return Evaluator(
        config,
        state,
        clock=clock,
        registry=registry,
        models=MlflowModels(registry),
        reporter=MlflowMetricReporter(registry),
        observer_factory=observer_factory,
    )


def build_trigger(config: Config) -> Trigger:
    """The configured backend; secrets come from the validated config, never logged."""
    trig = config.trigger
    runs_dir = config.state.dir / "runs"
    if trig.backend == "airflow":
        from watcher.backends.airflow import AirflowTrigger

        af = trig.airflow
        return AirflowTrigger(
            af.url,
            trig.dag_id,
            username=af.username,
            password=af.password.get_secret_value() if af.password else None,
            token=af.token.get_secret_value() if af.token else None,
            timeout=af.timeout,
        )
    if trig.backend == "command":
        from watcher.backends.child import CommandTrigger

        return CommandTrigger(runs_dir, trig.command)
    from watcher.backends.child import LocalTrigger

    return LocalTrigger(runs_dir, tracking_uri=config.tracking_uri)


def build_data_side(
    config: Config,
    state: StateStore,
    *,
    trigger: Trigger | None = None,
    hooks: Sequence[RunHooks] = (),
    clock: Clock | None = None,
    follow_interval: float | None = None,
    observer_factory: Callable[[], BaseObserver] | None = None,
    progress: bool = True,
) -> tuple[DataWatcher, Delivery]:
    """The data watcher and the delivery of its triggers, sharing one outbox; ``trigger``
    defaults to the configured backend. ``hooks`` hear of each new trigger and each
    finished run (after the snapshots are pruned)."""
    from watcher.data.snapshots import SnapshotKeeper, SnapshotStore
    from watcher.data.watcher import DataWatcher
    from watcher.runtime.clock import SystemClock
    from watcher.trigger.delivery import Delivery
    from watcher.trigger.outbox import Outbox

    w, t = config.watch, config.trigger
    clock = clock or SystemClock()
    outbox = Outbox(state, retry_initial=t.retry_initial, retry_max=t.retry_max)
    keeper = None
    if w.snapshot_dir is not None:
        keeper = SnapshotKeeper(SnapshotStore(w.snapshot_dir, w.snapshot_keep), outbox)
    data = DataWatcher(
        config,
        state,
        outbox,
        snapshots=keeper,
        hooks=hooks,
        clock=clock,
        observer_factory=observer_factory,
        progress=progress,
    )
    delivery = Delivery(
        config,
        state,
        trigger or build_trigger(config),
        outbox,
        data,
        hooks=[*([keeper] if keeper is not None else []), *hooks],
        clock=clock,
        follow_interval=follow_interval,
    )
    return data, delivery
