"""Ports: every protocol between components and adapters, and the plain values crossing them.

The MLflow adapter (watcher/backends/mlflow_registry.py) and the in-memory fake
(watcher/testing.py) implement :class:`Registry` and pass the same contract
tests. Versions are always ``str`` (MLflow returns ints in-process, strings
over REST).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from watcher.errors import TriggerError

if TYPE_CHECKING:  # values only: ports import no component at run time
    from alerts.model import Alert, Notification
    from pipeline.profile import Profile
    from watcher.monitor.policy import Decision, Observation

RegistryMode = Literal["alias", "stage"]

PRODUCTION_ALIAS = "production"
PRODUCTION_STAGE = "Production"
ARCHIVED_STAGE = "Archived"

# Lineage and quarantine tags on model versions (written by pipeline/ and rollback).
# Same spelling as pipeline.register.TAG_PREVIOUS; duplicated so ports stay import-free.
TAG_PREVIOUS = "watcher.previous_production"
TAG_QUARANTINED = "watcher.quarantined"
TAG_ROLLBACK_REASON = "watcher.rollback_reason"
TAG_ROLLED_BACK_AT = "watcher.rolled_back_at"
TAG_ROLLED_BACK_BY = "watcher.rolled_back_by"


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One registered model version, normalised."""

    name: str
    version: str
    stage: str = "None"  # MLflow stage: None / Staging / Production / Archived
    tags: Mapping[str, str] = field(default_factory=dict)
    run_id: str | None = None
    status: str = "READY"

    @property
    def quarantined(self) -> bool:
        return self.tags.get(TAG_QUARANTINED, "").lower() == "true"

    @property
    def previous_production(self) -> str | None:
        return self.tags.get(TAG_PREVIOUS) or None


@dataclass(frozen=True, slots=True)
class ModelSnapshot:
    """What one poll saw of one registered model."""

    name: str
    production: str | None
    versions: Mapping[str, VersionInfo]


class Registry(Protocol):
    """The model registry. Methods raise watcher.errors.RegistryError (RegistryUnavailable
    when the backend cannot be reached); a missing model/version is None/False, not an error."""

    mode: RegistryMode

    def snapshot(self, patterns: Sequence[str]) -> list[ModelSnapshot]:
        """Every registered model whose name matches one of ``patterns`` (names or globs)."""
        ...

    def model_snapshot(self, name: str) -> ModelSnapshot | None:
        """``name`` alone, read afresh (a webhook's hint); None when it does not exist."""
        ...

    def model_exists(self, name: str) -> bool: ...

    def versions(self, name: str) -> list[VersionInfo]:
        """All versions of ``name``, oldest first; [] when the model does not exist."""
        ...

    def get_version(self, name: str, version: str) -> VersionInfo | None: ...

    def production(self, name: str) -> str | None: ...

    def set_production(self, name: str, version: str) -> None:
        """Move Production to ``version`` atomically (alias move, or stage transition that
        archives the previous Production version in stage mode)."""
        ...

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None: ...

    def delete_tag(self, name: str, version: str, key: str) -> None: ...

    def archive(self, name: str, version: str) -> None:
        """Stage mode: move to Archived. Alias mode: nothing to do (no stages)."""
        ...


# The registry webhook events the monitor subscribes to (MLflow's names): each is a hint
# to read one model afresh. MLflow has none for deletions or stage transitions: the
# reconcile poll sees those.
WEBHOOK_EVENTS = (
    "registered_model.created",
    "model_version.created",
    "model_version_alias.created",
    "model_version_alias.deleted",
    "model_version_tag.set",
    "model_version_tag.deleted",
)
WEBHOOK_ACTIVE = "ACTIVE"


@dataclass(frozen=True, slots=True)
class WebhookInfo:
    """One webhook of ours as MLflow lists it (never its secret)."""

    webhook_id: str
    name: str
    url: str
    events: tuple[str, ...]
    status: str  # ACTIVE / DISABLED


@dataclass(frozen=True, slots=True)
class WebhookTest:
    """What MLflow's test delivery to a webhook returned."""

    success: bool
    status: int | None  # the receiver's HTTP status
    error: str | None


class RegistryWebhooks(Protocol):
    """The watcher's webhook in MLflow: the one named ours that calls ``url``. Raises like
    Registry (RegistryError, RegistryUnavailable)."""

    def find(self, url: str) -> WebhookInfo | None: ...

    def install(self, url: str, secret: str) -> tuple[WebhookInfo, bool]:
        """Create ours (True) or update it to these events, secret and ACTIVE (False)."""
        ...

    def test(self, webhook_id: str) -> WebhookTest: ...

    def remove(self, url: str) -> list[str]:
        """Delete ours calling ``url``; the ids deleted."""
        ...


def matches(name: str, patterns: Sequence[str]) -> bool:
    """Exact name or shell glob (``iris-*``); case-sensitive like MLflow names."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def quarantine_tags(reason: str, at: datetime, by: str) -> dict[str, str]:
    """The tags that mark a version as rolled back from (rollback never returns to it)."""
    return {
        TAG_QUARANTINED: "true",
        TAG_ROLLBACK_REASON: reason,
        TAG_ROLLED_BACK_AT: at.isoformat(),
        TAG_ROLLED_BACK_BY: by,
    }


# --- Data and trigger ports (the Trigger protocol, run hooks) --------------------------


class TriggerUnavailable(TriggerError):
    """The trigger backend could not be reached or failed server-side; retry later."""

    retryable = True


@dataclass(frozen=True)
class SubmitResult:
    """Outcome of a delivered submit; ``created`` is False when the run already existed."""

    run_id: str
    created: bool
    state: str | None = None

    @property
    def status(self) -> Literal["submitted", "already_exists"]:
        return "submitted" if self.created else "already_exists"


class Trigger(Protocol):
    """Where the delivery sends runs (backends/airflow.py, backends/child.py). Every
    capability is declared; a backend without one answers None (or does nothing)."""

    # True: the backend starts whatever it is given at once, so the watcher hands it one
    # run at a time, in order (what ``max_active_runs=1`` does for the Airflow DAG).
    serial: bool

    @property
    def dag_id(self) -> str | None:
        """The DAG the runs belong to (named in the unpause hint); None without one."""
        ...

    @property
    def base_url(self) -> str | None:
        """Where the DAG's API lives (for the unpause hint); None without one."""
        ...

    def submit(self, run_id: str, conf: Mapping[str, Any]) -> SubmitResult:
        """Start run ``run_id``; an existing run counts as delivered (``created=False``).

        Raises TriggerUnavailable (retry later) or TriggerError (needs an operator).
        """
        ...

    def run_state(self, run_id: str) -> str | None:
        """queued | running | success | failed; None when the backend has no such run."""
        ...

    def is_paused(self) -> bool | None:
        """Whether the DAG is paused (its runs stay queued); None: the backend has no pause."""
        ...

    def cancel(self, run_id: str) -> None:
        """Stop a run that is no longer followed (nothing, where the backend cannot)."""
        ...

    def exit_code(self, run_id: str) -> int | None:
        """A finished run's exit code; None when unknown or the backend has none."""
        ...

    def summary(self, run_id: str) -> dict[str, Any] | None:
        """What a finished run reported about itself; None when nothing."""
        ...

    def close(self) -> None: ...


class RunHooks(Protocol):
    """Told about each trigger and each run (drift: scores the data, judges the result)."""

    def before_trigger(self, data_dir: Path, data_hash: str) -> dict[str, Any]:
        """Fields to add to the run conf of a new trigger ({} for none). Never raises."""
        ...

    def after_run(self, run_id: str, conf: Mapping[str, Any], state: str) -> None:
        """A followed run finished in ``state`` (success, failed)."""
        ...


class DatasetView(Protocol):
    """What the delivery asks of the data side: the data a deliberate retrain trains on."""

    def retrain_conf(self) -> dict[str, Any] | None:
        """Run conf (data_hash, data_dir, file_count, source_dir when frozen) for a retrain
        of the current data; None before any data was hashed."""
        ...


class RetrainQueue(Protocol):
    """What rollback asks of the delivery side: queue a deliberate retrain."""

    def request_retrain(self, reason: str) -> str | None:
        """Queue a retrain of the current data; its run id, or None when nothing was queued."""
        ...


# --- Monitor, alerting and rollback ports (AlertSink, ObservationSource, verdicts) -----


class AlertSink(Protocol):
    """The one way into alerting for every component (runtime.alerting.Alerting)."""

    def evaluate(self, source: str, active: Sequence[Alert]) -> list[Notification]:
        """Set the full set of active alerts of ``source``; the lifecycle decides what to send."""
        ...

    def events(self, alerts: Sequence[tuple[Alert, int]]) -> int:
        """One-off notifications, each unique by its sequence (a history event or journal id),
        queued in one transaction; how many were new."""
        ...

    def event(self, alert: Alert, sequence: int) -> int:
        """One one-off notification (``events`` of one)."""
        ...


class ObservationSource(Protocol):
    """Live observations per (model, version), of whatever metric each was reported as
    (``Observation.metric``; backends.mlflow_observations)."""

    def observations(
        self, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Observation]]: ...


class ProductionMoves(Protocol):
    """Where the rollback journal left Production (rollback.journal.JournalReader): the
    monitor's gauges after a restart show a rollback made after its last poll."""

    def moved_since(self, model: str, since: str) -> str | None:
        """The version the newest rollback of ``model`` at or after ``since`` (ISO) moved
        Production to; None when none did."""
        ...


@dataclass(frozen=True, slots=True)
class Logged:
    """Where an observation was logged: the run, and its number for the version."""

    run_id: str
    sequence: int


class MetricReporter(Protocol):
    """Where live metrics go (backends.mlflow_observations.MlflowMetricReporter)."""

    def report(
        self, model: str, metric: str, value: float, samples: int, *, version: str, at: datetime
    ) -> Logged:
        """Log one observation of ``metric`` (pipeline/metrics.py) for ``model`` v``version``;
        UsageError for a value outside the metric's range."""
        ...


class Verdicts(Protocol):
    """What the monitor decided of each Production version, read-only (for rollback)."""

    def verdicts(self) -> Mapping[str, Decision]:
        """The latest decision per model: a read-only copy of frozen values."""
        ...

    def observations(self, model: str, version: str) -> Sequence[Observation]:
        """The last poll's usable observations of one version (empty if not fetched)."""
        ...


# --- Model artifacts ports (profiles, lineage tags) -------------------------------------


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A registered model version loaded for scoring."""

    version: str
    model: Any
    features: tuple[str, ...] | None  # None: the model does not say; use the file's columns


class ModelArtifacts(Protocol):
    """What training left besides the registry entry: a version's reference profile, the
    model itself, the metrics of the run a trigger started. The MLflow side is
    watcher/backends/mlflow_models.py, the fake ``FakeModels``; both raise like Registry
    (RegistryError, RegistryUnavailable when the backend cannot be reached)."""

    def training_profile(self, name: str, version: str) -> Profile | None:
        """The reference profile logged by the run that trained ``name`` v``version``;
        None for a version trained before profiles were logged. UsageError for an unknown
        model or version."""
        ...

    def triggered_run_accuracy(self, run_id: str) -> float | None:
        """Test accuracy of the training run tagged with trigger run id ``run_id`` (tag
        ``dag_run_id``); None while there is no such run or it logged no accuracy."""
        ...

    def load_model(self, name: str, version: str) -> LoadedModel:
        """Version ``version`` of ``name`` (pinned, never "whatever Production is now");
        RegistryError when it or its model cannot be loaded."""
        ...
