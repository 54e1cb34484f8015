"""Drift of a data directory against a reference profile: the I/O around watcher.drift.stats.

Used by ``watcher drift`` and by the daemon on every data change. Reads the
directory with the pipeline's own loader (same parsing, same validation, same
dataset hash as training) and the reference profile through the ModelArtifacts port.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcher.drift.stats import DriftOptions, DriftReport, Kind, dataset_drift
from watcher.errors import UsageError

if TYPE_CHECKING:
    from pipeline.data import Dataset
    from pipeline.profile import Profile
    from watcher.config import Config, DriftConfig
    from watcher.ports import ModelArtifacts, Registry


@dataclass(frozen=True, slots=True)
class Reference:
    """The Production version of a model and its profile (None: trained before profiles)."""

    model: str
    version: str | None
    profile: Profile | None

    @property
    def label(self) -> str:
        return f"{self.model} v{self.version}" if self.version else self.model

    @property
    def note(self) -> str | None:
        """Why there is nothing to compare against, as a sentence for humans."""
        if self.version is None:
            return f"no reference: model {self.model!r} has no Production version"
        if self.profile is None:
            return (
                f"no reference: {self.label} has no reference_profile.json "
                "(trained before reference profiles were logged); drift not computed"
            )
        return None


def drift_options(cfg: DriftConfig) -> DriftOptions:
    return DriftOptions(
        method=cfg.method,
        p_value=cfg.p_value,
        threshold=cfg.threshold,
        drift_share=cfg.drift_share,
    )


def load_data(data_dir: Path, config: Config) -> Dataset:
    """The directory as the pipeline reads it; bad data is a UsageError naming file/column/row."""
    from pipeline.data import load_dataset
    from pipeline.errors import DataValidationError

    try:
        return load_dataset(
            data_dir, target=config.pipeline.target_column, patterns=config.watch.ignore
        )
    except DataValidationError as exc:
        raise UsageError(f"{data_dir}: {exc}") from None


def profile_of_dir(data_dir: Path, config: Config) -> Profile:
    """A reference profile built on the fly from another directory (``--reference``)."""
    from pipeline.profile import profile_from_dataset

    return profile_from_dataset(load_data(data_dir, config))


def drift_for_dataset(
    data_dir: Path, profile: Profile, config: Config, *, reference_label: str = ""
) -> DriftReport:
    """Drift of ``data_dir`` against ``profile`` with the ``[drift]`` settings."""
    dataset = load_data(data_dir, config)
    return drift_of(dataset, profile, config, reference_label=reference_label)


def drift_of(
    dataset: Dataset, profile: Profile, config: Config, *, reference_label: str = ""
) -> DriftReport:
    """Drift of an already loaded dataset (the daemon may have one in hand)."""
    from pipeline.profile import category_value

    kinds: dict[str, Kind] = dict(profile.kinds)
    current: dict[str, Any] = {name: dataset.features[name].to_numpy() for name in dataset.features}
    current[dataset.target_name] = dataset.target.to_numpy()
    for name, kind in kinds.items():
        if kind == "cat" and name in current:
            # Compare through the same canonical text the profile stores.
            current[name] = [category_value(v) for v in current[name]]
    reference: dict[str, Any] = {
        name: [v for v in profile.sample[name] if v is not None] for name in kinds
    }
    notes: list[str] = []
    if profile.target and profile.target != dataset.target_name:
        notes.append(f"reference target {profile.target!r} differs from {dataset.target_name!r}")
    try:
        return dataset_drift(
            reference,
            current,
            kinds,
            drift_options(config.drift),
            reference_label=reference_label,
            data_hash=dataset.data_hash,
            notes=notes,
        )
    except ValueError as exc:
        raise UsageError(f"{reference_label or 'reference'}: {exc}") from None


def production_reference(registry: Registry, models: ModelArtifacts, model: str) -> Reference:
    """The Production version of ``model`` and the profile it was trained on."""
    if not registry.model_exists(model):
        raise UsageError(f"model {model!r} not found in the registry")
    version = registry.production(model)
    if version is None:
        return Reference(model, None, None)
    return Reference(model, version, models.training_profile(model, version))
