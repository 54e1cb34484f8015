"""What training logged in MLflow besides the registry entry: the ModelArtifacts port.

A version's reference profile (``reference_profile.json`` on its training run, read
with pipeline.profile's loader), the model itself (for the evaluator), and the test
accuracy of the run a trigger started (the "drift without accuracy gain" rule). Goes
through the process's one :class:`MlflowRegistry` (its client, call counts and error
translation); pipeline errors are mapped to watcher errors here, at the edge.
"""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING

from watcher.backends.mlflow_registry import MlflowRegistry, quote
from watcher.errors import RegistryError, UsageError
from watcher.ports import LoadedModel

if TYPE_CHECKING:
    from pipeline.profile import Profile

TRAIN_EXPERIMENT = "train_pipeline"  # pipeline.train.DEFAULT_EXPERIMENT
TAG_TRIGGER_RUN = "dag_run_id"  # set by pipeline.train on every training run


def _load(source: str, uri: str, version: str) -> LoadedModel:
    """Download the model at ``source`` (a version's storage location) and load it with
    mlflow.sklearn; its feature names from the model, else from its signature."""
    import mlflow.artifacts
    import mlflow.sklearn
    from mlflow.models import Model

    with tempfile.TemporaryDirectory(prefix="watcher-evaluator-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=tmp, tracking_uri=uri
        )
        model = mlflow.sklearn.load_model(local)
        names = getattr(model, "feature_names_in_", None)
        if names is None:
            signature = Model.load(local).signature
            names = signature.inputs.input_names() if signature is not None else None
    features = tuple(str(n) for n in names) if names is not None else None
    return LoadedModel(version, model, features)


class MlflowModels:
    """ModelArtifacts port over the registry adapter's MLflow client."""

    def __init__(self, registry: MlflowRegistry) -> None:
        self.registry = registry

    def training_profile(self, name: str, version: str) -> Profile | None:
        from pipeline.errors import BackendError, BadInputError, PipelineError
        from pipeline.profile import load_profile

        self.registry.count(2)  # the version, then its run's artifacts
        try:
            return load_profile(self.registry.client, name, version)
        except BadInputError as exc:  # unknown model or version
            raise UsageError(str(exc)) from None
        except BackendError as exc:
            raise RegistryError(str(exc)) from exc
        except PipelineError as exc:  # a corrupt profile: say which, don't crash
            raise RegistryError(f"{name} v{version}: {exc}") from exc

    def triggered_run_accuracy(self, run_id: str) -> float | None:
        # Not abandoned on a stop: the run's end is recorded already, the rule would not rerun.
        with self.registry.call("search_runs", interruptible=False) as client:
            exp = client.get_experiment_by_name(TRAIN_EXPERIMENT)
            if exp is None:
                return None
            runs = client.search_runs(
                [exp.experiment_id],
                filter_string=f"tags.{TAG_TRIGGER_RUN} = '{quote(run_id)}'",
                max_results=1,
            )
        if not runs:
            return None
        value = runs[0].data.metrics.get("accuracy")
        return float(value) if value is not None else None

    def load_model(self, name: str, version: str) -> LoadedModel:
        # Pinned to the version asked for (the evaluator attributes its observation to it).
        # Its location is read through our client: `models:/` in download_artifacts would be
        # resolved against MLflow's *global* registry URI, whatever registry_uri says.
        with self.registry.call(f"load model {name} v{version}", interruptible=False) as c:
            source = c.get_model_version_download_uri(name, str(version))
            return _load(str(source), self.registry.uri, str(version))
