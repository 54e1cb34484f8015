"""The one place that builds real adapters and components from the config."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watcher.backends.mlflow_registry import MlflowRegistry
    from watcher.config import Config
    from watcher.runtime.component import Component
    from watcher.runtime.state import StateStore


def build_components(
    config: Config, state: StateStore, registry: MlflowRegistry | None = None
) -> list[Component]:
    """Components in start order (stopped in reverse). ``registry``: the process's MLflow
    adapter when the caller has one already (the demo); else it is built here."""
    from watcher.backends.mlflow_models import MlflowModels
    from watcher.backends.mlflow_registry import MlflowRegistry
    from watcher.data.watcher import DataWatcher
    from watcher.drift.watch import DriftWatch
    from watcher.monitor.poll import build_monitor
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
    drift = DriftWatch(config, state, registry, MlflowModels(registry), clock, alerting)
    data = DataWatcher(config, state, drift=drift)
    monitor = build_monitor(config, state, alerting.dispatcher, registry)
    rollback = AutoRollback(
        config.rollback,
        config.monitor.min_accuracy,
        config.monitor.window,
        monitor,
        registry,
        state,
        config.state.dir,
        clock,
        alerting,
        retrain=data.request_retrain,
    )
    components: list[Component] = [
        alerting,
        CoreChecks(config.watch.data_dir, state),
        data,
        monitor,
        rollback,
    ]
    if config.monitor.feedback_dir is not None:
        from watcher.monitor.evaluator import Evaluator

        components.append(Evaluator(config, state, clock=clock, registry=registry))
    if config.http.listen:
        # Last, so it starts after and stops before what it reports on.
        from watcher.runtime.http import HttpEndpoint

        components.append(HttpEndpoint(config.http.listen, components))
    return components
