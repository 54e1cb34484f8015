"""Prometheus metrics: defined once here, updated by the components, served by runtime/http.py.

Everything lives in a dedicated ``CollectorRegistry`` (not the process-global
default), so tests and a second in-process daemon never collide on names.
Components import :data:`METRICS` and call the small helpers below; the helpers
keep label values consistent (one state gauge per model, known result names).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from watcher import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Trigger outcomes: delivered (accepted by the backend), duplicate (409: already
# delivered), retry (transient failure, will retry), failed (permanent).
TRIGGER_RESULTS = ("delivered", "duplicate", "retry", "failed")
# Alert states of the live-metric policy, one-hot per model.
ALERT_STATES = ("ok", "inconclusive", "pending", "firing")

# Hashing a data dir takes from milliseconds (cache hits) to minutes (first hash of TBs).
_HASH_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0)


class Metrics:
    """All the watcher's metrics on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._live_metrics: dict[str, str] = {}  # model -> the metric its live gauge shows
        r = self.registry
        ProcessCollector(registry=r)
        self.build_info = Info("watcher_build", "registry-watcher build information", registry=r)
        self.build_info.info({"version": __version__})

        self.up = Gauge("watcher_up", "1 while every health check passes, else 0", registry=r)
        self.component_healthy = Gauge(
            "watcher_component_healthy",
            "1 if the component's health check passes",
            ["component"],
            registry=r,
        )
        self.triggers = Counter(
            "watcher_triggers",
            "Training-run triggers by result (delivered, duplicate, retry, failed)",
            ["result"],
            registry=r,
        )
        self.last_trigger = Gauge(
            "watcher_last_trigger_timestamp_seconds",
            "Unix time of the last trigger accepted by the backend",
            registry=r,
        )
        self.hash_duration = Histogram(
            "watcher_dataset_hash_duration_seconds",
            "Time to compute the dataset hash of the data dir",
            buckets=_HASH_BUCKETS,
            registry=r,
        )
        self.hash_bytes = Counter(
            "watcher_dataset_hashed_bytes",
            "Bytes read to hash dataset files (cache misses only)",
            registry=r,
        )
        self.dataset_bytes = Gauge(
            "watcher_dataset_bytes", "Total size of the files in the current dataset", registry=r
        )
        self.dataset_files = Gauge(
            "watcher_dataset_files", "Number of files in the current dataset", registry=r
        )
        self.production_version = Gauge(
            "watcher_production_version",
            "Version number of the model's Production version (absent if none)",
            ["model"],
            registry=r,
        )
        self.live_accuracy = Gauge(
            "watcher_live_accuracy",
            "Latest windowed live accuracy of the model's Production version",
            ["model"],
            registry=r,
        )
        self.live_metric = Gauge(
            "watcher_live_metric",
            "Latest windowed value of the live metric watched for the model's Production version",
            ["model", "metric"],
            registry=r,
        )
        self.alert_state = Gauge(
            "watcher_alert_state",
            "Live-metric alert state per model, one-hot (ok, inconclusive, pending, firing)",
            ["model", "state"],
            registry=r,
        )
        self.rollbacks = Counter(
            "watcher_rollbacks",
            "Rollbacks of Production by model and result (done, refused, failed, dry_run)",
            ["model", "result"],
            registry=r,
        )
        self.poll_errors = Counter(
            "watcher_poll_errors",
            "Failed polls of a backend (mlflow, airflow, prometheus)",
            ["backend"],
            registry=r,
        )
        self.poll_overruns = Counter(
            "watcher_poll_overruns",
            "Registry polls skipped because the previous one was still running "
            "(a poll longer than monitor.poll_interval)",
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "watcher_webhook_deliveries",
            "MLflow registry webhook deliveries by outcome (accepted, ignored, duplicate, refused)",
            ["outcome"],
            registry=r,
        )
        self.last_poll_success = Gauge(
            "watcher_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll of a backend",
            ["backend"],
            registry=r,
        )
        self.outbox_depth = Gauge(
            "watcher_outbox_depth", "Triggers waiting in the outbox for delivery", registry=r
        )
        self.notifier_failures = Counter(
            "watcher_notifier_failures",
            "Failed alert deliveries by channel",
            ["channel"],
            registry=r,
        )

    # Helpers that keep labels consistent ---------------------------------

    def record_trigger(self, result: str, at: float | None = None) -> None:
        if result not in TRIGGER_RESULTS:
            raise ValueError(f"trigger result {result!r} is not one of {TRIGGER_RESULTS}")
        self.triggers.labels(result=result).inc()
        if at is not None and result in ("delivered", "duplicate"):
            self.last_trigger.set(at)

    def record_hash(self, seconds: float, bytes_read: int, total_bytes: int, files: int) -> None:
        self.hash_duration.observe(seconds)
        self.hash_bytes.inc(bytes_read)
        self.dataset_bytes.set(total_bytes)
        self.dataset_files.set(files)

    def set_production(self, model: str, version: str | int | None) -> None:
        if version is None or not str(version).isdigit():
            # No Production version: drop the series rather than report a fake 0.
            with contextlib.suppress(KeyError):
                self.production_version.remove(model)
            return
        self.production_version.labels(model=model).set(int(version))

    def set_live(self, model: str, metric: str, value: float) -> None:
        """The model's windowed live metric; accuracy also on ``watcher_live_accuracy``
        (as before the metric was configurable). One metric per model: a series of a
        metric no longer watched is dropped."""
        before = self._live_metrics.get(model)
        if before is not None and before != metric:
            with contextlib.suppress(KeyError):
                self.live_metric.remove(model, before)
        self._live_metrics[model] = metric
        self.live_metric.labels(model=model, metric=metric).set(value)
        if metric == "accuracy":
            self.live_accuracy.labels(model=model).set(value)
        else:
            with contextlib.suppress(KeyError):
                self.live_accuracy.remove(model)

    def set_alert_state(self, model: str, state: str) -> None:
        if state not in ALERT_STATES:
            raise ValueError(f"alert state {state!r} is not one of {ALERT_STATES}")
        for s in ALERT_STATES:
            self.alert_state.labels(model=model, state=s).set(1 if s == state else 0)

    def set_health(self, checks: Iterable[tuple[str, bool]]) -> None:
        all_ok = True
        for name, ok in checks:
            self.component_healthy.labels(component=name).set(1 if ok else 0)
            all_ok = all_ok and ok
        self.up.set(1 if all_ok else 0)

    def render(self) -> bytes:
        """The text exposition format (what /metrics serves)."""
        return generate_latest(self.registry)


# The process-wide instance the components update and the HTTP endpoint serves.
METRICS = Metrics()
