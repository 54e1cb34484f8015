"""What every trigger backend shares: the exactly-once run ids, the run conf's pipeline
settings, and waiting for a run to end. The :class:`watcher.ports.Trigger` protocol is
implemented by ``backends/airflow.py`` (REST) and ``backends/child.py`` (local, command).

Exactly-once rests on the run id: it is derived from the dataset hash
(:func:`run_id_for`), so a repeated submit answers "already exists" and counts as
delivered.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from pipeline.estimator import DEFAULT_ESTIMATOR

if TYPE_CHECKING:
    from watcher.config import Config
    from watcher.ports import Trigger

TERMINAL_STATES = frozenset({"success", "failed"})

_HASH_RE = re.compile(r"[0-9a-f]{64}")
_REASON_RE = re.compile(r"[a-z][a-z0-9_]*")


def run_id_for(dataset_hash: str, reason: str = "data", attempt: int | None = None) -> str:
    """The run id (Airflow's ``dag_run_id``) for a trigger.

    A data change gives ``data__<hash>``: the same content always maps to the same
    run, so the backend's "already exists" (Airflow's 409) makes delivery idempotent.
    A deliberate retrain of the same data needs a distinct, recorded id:
    ``retrain__<hash>__<attempt>``.
    """
    if not _HASH_RE.fullmatch(dataset_hash):
        raise ValueError(f"dataset_hash must be 64 lowercase hex digits, got {dataset_hash!r}")
    if not _REASON_RE.fullmatch(reason) or "__" in reason:
        raise ValueError(f"reason must be a lowercase word like 'retrain', got {reason!r}")
    if reason == "data":
        if attempt is not None:
            raise ValueError("attempt is only for deliberate retrains, not reason='data'")
        return f"data__{dataset_hash}"
    if attempt is None or attempt < 1:
        raise ValueError(f"reason={reason!r} needs attempt >= 1, got {attempt!r}")
    return f"{reason}__{dataset_hash}__{attempt}"


def pipeline_settings(config: Config) -> dict[str, Any]:
    """The effective pipeline settings under their run conf names (``pipeline.config``).

    Every run conf carries them, on every backend, so a run trains and promotes with what
    ``check-config`` shows; they win over the worker's ``WATCHER_*`` env defaults. The
    worker keeps its own ``MLFLOW_TRACKING_URI`` (the watcher's may be a local path).
    """
    pipe = config.pipeline
    settings: dict[str, Any] = {
        "model_name": pipe.model_name,
        "registry_mode": config.mlflow.registry_mode,
        "promote": pipe.promote,
        "target": pipe.target_column,
        "estimator": pipe.estimator,
        "params": dict(pipe.params),
        # as written; null: the pipeline infers it (the metric, the estimator, the target)
        "task": pipe.configured_task,
        "metric": pipe.metric,
        "threshold": pipe.threshold,
    }
    if pipe.estimator == DEFAULT_ESTIMATOR:  # the seed's RandomForest settings
        settings.update(n_estimators=pipe.n_estimators, max_depth=pipe.max_depth)
    return settings


def wait_terminal(trigger: Trigger, run_id: str, timeout: float, poll: float = 0.2) -> str | None:
    """Poll until the run is terminal or ``timeout`` passes (tests and one-shot CLI use)."""
    deadline = time.monotonic() + timeout
    state = trigger.run_state(run_id)
    while state not in TERMINAL_STATES and time.monotonic() < deadline:
        time.sleep(poll)
        state = trigger.run_state(run_id)
    return state
