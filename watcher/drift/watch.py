"""Drift in the daemon: on each data change, compare the new data with what Production
was trained on; after the triggered run, apply the "drift without accuracy gain" rule.

Never blocks a trigger: any failure is logged and the trigger goes out without scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alerts import make_alert
from watcher.drift.stats import conf_fields, drift_without_gain
from watcher.errors import UsageError, WatcherError
from watcher.runtime.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from watcher.config import Config
    from watcher.drift.check import Reference
    from watcher.ports import AlertSink, ModelArtifacts, Registry
    from watcher.runtime.clock import Clock
    from watcher.runtime.state import StateStore

log = get_logger(__name__)


class DriftWatch:
    """Drift scores for each new trigger, and the drift rule for each run (ports.RunHooks)."""

    def __init__(
        self,
        config: Config,
        state: StateStore,
        registry: Registry,
        models: ModelArtifacts,
        clock: Clock,
        alerting: AlertSink | None,
    ) -> None:
        self.config = config
        self.state = state
        self.clock = clock
        self.alerting = alerting
        self.model = config.pipeline.model_name
        self.registry = registry
        self.models = models
        self._ref: Reference | None = None
        self._noted: str | None = None

    def _reference(self) -> Reference:
        from watcher.drift.check import production_reference

        version = self.registry.production(self.model)
        if self._ref is None or self._ref.version != version:
            # The profile is downloaded once per Production version.
            self._ref = production_reference(self.registry, self.models, self.model)
        return self._ref

    # ports.RunHooks -------------------------------------------------------------

    def before_trigger(self, data_dir: Path, data_hash: str) -> dict[str, Any]:
        """Drift fields for the trigger conf ({} when there is nothing to compare)."""
        from watcher.drift.check import drift_for_dataset

        try:
            ref = self._reference()
        except UsageError as exc:  # e.g. the model was never trained: nothing to compare with
            self._skip(f"no reference: {exc}")
            return {}
        except WatcherError as exc:
            log.warning("drift_not_computed", error=str(exc))
            return {}
        if ref.profile is None:
            self._skip(ref.note or "no reference profile")
            return {}
        try:
            report = drift_for_dataset(
                data_dir, ref.profile, self.config, reference_label=ref.label
            )
        except (WatcherError, OSError) as exc:  # bad data fails the pipeline's preprocess too
            log.warning("drift_not_computed", error=str(exc))
            return {}
        if report.data_hash != data_hash:
            log.info("drift_skipped_data_changed", data_hash=data_hash)
            return {}
        fields = conf_fields(report)
        fields["drift"]["production_version"] = ref.version
        fields["drift"]["production_accuracy"] = (
            self._training_accuracy(ref.version) if ref.version else None
        )
        columns = ", ".join(report.drifted_columns) or "none"
        message = (
            f"data {data_hash[:12]} vs {ref.label}: "
            f"{'DRIFT' if report.dataset_drift else 'no drift'} "
            f"({report.share:.0%} of columns; drifted: {columns})"
        )
        event_id = self.state.record(
            "data.drift",
            message,
            model=self.model,
            version=ref.version,
            data_hash=data_hash,
            payload=fields["drift"],
        )
        log.info("drift_checked", message=message)
        if report.dataset_drift and self.config.drift.alert and self.alerting is not None:
            self.alerting.event(
                make_alert(
                    "DataDrift",
                    starts_at=self.clock.now(),
                    severity="warning",
                    summary=f"data drift in {columns} ({report.share:.0%} of columns)",
                    description=message,
                    model=self.model,
                    data_hash=data_hash,
                ),
                event_id,
            )
        return fields

    def _skip(self, note: str) -> None:
        """Record why drift was not computed, once per distinct reason."""
        if self._noted != note:
            self._noted = note
            self.state.record("data.drift_skipped", note, model=self.model)

    def _training_accuracy(self, version: str) -> float | None:
        try:
            info = self.registry.get_version(self.model, version)
            raw = info.tags.get("accuracy") if info is not None else None
            return float(raw) if raw else None
        except (WatcherError, ValueError):  # the rule then decides nothing; drift was recorded
            return None

    def after_run(self, run_id: str, conf: Mapping[str, Any], state: str) -> None:
        """DriftWithoutAccuracyGain when drift was detected and the new model is no better."""
        drift = conf.get("drift")
        if state != "success" or not isinstance(drift, dict) or not drift.get("dataset_drift"):
            return
        new_accuracy = self._run_accuracy(run_id)
        prod = drift.get("production_accuracy")
        prod_accuracy = float(prod) if isinstance(prod, int | float) else None
        if not drift_without_gain(drift, new_accuracy, prod_accuracy):
            return
        message = (
            f"{self.model}: data drifted ({', '.join(drift.get('drifted_columns', []))}) "
            f"but run {run_id} reached accuracy {new_accuracy:.4f}, not above Production "
            f"v{drift.get('production_version')} ({prod_accuracy:.4f})"
        )
        event_id = self.state.record(
            "data.drift_without_gain", message, model=self.model, payload={"run_id": run_id}
        )
        log.warning("drift_without_accuracy_gain", message=message)
        if self.alerting is not None:
            self.alerting.event(
                make_alert(
                    "DriftWithoutAccuracyGain",
                    starts_at=self.clock.now(),
                    severity="warning",
                    summary=message,
                    model=self.model,
                    run_id=run_id,
                ),
                event_id,
            )

    def _run_accuracy(self, run_id: str) -> float | None:
        """Test accuracy of the training run tagged with this trigger's run id."""
        try:
            return self.models.triggered_run_accuracy(run_id)
        except WatcherError as exc:
            log.warning("drift_rule_skipped", run_id=run_id, error=str(exc))
            return None
