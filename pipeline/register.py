"""Register a trained model and move it None -> Staging -> Production under a rule.

Two registry modes share one flow:
- ``alias`` (default, the MLflow 3 way): aliases ``staging`` and ``production``;
- ``stage``: the classic stages; the replaced Production version is archived.

Promotion writes the lineage rollback needs (``watcher.previous_production`` on the
new Production version) and re-reads Production just before switching, so a
concurrent change (an operator's rollback, another run) is never overwritten.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, get_args

from pipeline import tracking
from pipeline.errors import BadInputError
from pipeline.metrics import METRICS, Metric, metric_of, task_metrics

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

RegistryMode = Literal["alias", "stage"]
PromoteRule = Literal["if_better", "always", "never"]
REGISTRY_MODES: tuple[str, ...] = get_args(RegistryMode)
PROMOTE_RULES: tuple[str, ...] = get_args(PromoteRule)
PRODUCTION_ALIAS = "production"
STAGING_ALIAS = "staging"
PRODUCTION_STAGE = "Production"
STAGING_STAGE = "Staging"
TAG_PREVIOUS = "watcher.previous_production"
TAG_REPLACED_BY = "watcher.replaced_by"
TAG_PROMOTED_AT = "watcher.promoted_at"
TAG_DECISION = "watcher.promotion_decision"


@dataclass(frozen=True, slots=True)
class Decision:
    promote: bool
    reason: str


@dataclass(frozen=True, slots=True)
class RegisterResult:
    model_name: str
    version: str
    promoted: bool
    reason: str
    production: str | None  # Production version after this call
    previous_production: str | None  # Production version before this call
    production_score: float | None  # old Production scored on the candidate's test split


def check_mode(mode: str) -> RegistryMode:
    if mode not in REGISTRY_MODES:
        raise BadInputError(f"registry mode must be one of {list(REGISTRY_MODES)}, got {mode!r}")
    return mode  # type: ignore[return-value]


def check_rule(rule: str) -> PromoteRule:
    if rule not in PROMOTE_RULES:
        raise BadInputError(f"promote must be one of {list(PROMOTE_RULES)}, got {rule!r}")
    return rule  # type: ignore[return-value]


def decide(
    rule: PromoteRule,
    *,
    candidate: float,
    threshold: float,
    production: float | None,
    has_production: bool,
    production_error: str | None = None,
    metric: Metric = METRICS["accuracy"],
) -> Decision:
    """Pure promotion rule. ``if_better``: passes the gate and is not worse than Production,
    both in the metric's direction (``rmse`` passes at or below its threshold)."""
    name = metric.name
    if rule == "never":
        return Decision(False, "promote=never")
    if rule == "always":
        return Decision(True, "promote=always")
    if not metric.passes(candidate, threshold):
        side = "below" if metric.direction == "higher" else "above"
        return Decision(False, f"{name} {candidate:.4f} {side} threshold {threshold:.4f}")
    if not has_production:
        return Decision(True, "passes the gate and there is no Production version")
    if production is None:
        return Decision(False, f"cannot score current Production: {production_error}")
    if metric.better(production, candidate):
        return Decision(
            False,
            f"{name} {candidate:.4f} worse than Production's {production:.4f} "
            "on the same test split",
        )
    return Decision(
        True,
        f"{name} {candidate:.4f} not worse than Production's {production:.4f} "
        "on the same test split",
    )


@contextmanager
def _stage_api() -> Iterator[None]:
    # Stage mode is a supported product feature; MLflow's deprecation notice is noise here.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*Model registry stages will be removed", category=FutureWarning
        )
        yield


def current_production(client: MlflowClient, name: str, mode: RegistryMode) -> str | None:
    """The Production version (as str) or None; raises on backend errors."""
    if mode == "alias":
        try:
            mv = client.get_model_version_by_alias(name, PRODUCTION_ALIAS)
        except Exception as exc:
            if tracking.is_not_found(exc):
                return None
            raise
        return str(mv.version)
    versions = client.search_model_versions(f"name = '{_quote(name)}'")
    prod = [int(v.version) for v in versions if v.current_stage == PRODUCTION_STAGE]
    return str(max(prod)) if prod else None


def _quote(name: str) -> str:
    return name.replace("'", "\\'")


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def score_version(
    client: MlflowClient,
    name: str,
    version: str,
    x: pd.DataFrame,
    y: pd.Series[Any],
    metric: Metric = METRICS["accuracy"],
) -> float:
    """``metric`` of registered ``name``/``version`` on ``x``/``y``."""
    import mlflow.sklearn

    from pipeline.train import evaluate

    del client  # load_model resolves models:/ through the registry URI set by tracking.client
    model = mlflow.sklearn.load_model(f"models:/{name}/{version}")
    return evaluate(model, x, y, metric.task)[metric.name]


def _stage(client: MlflowClient, name: str, version: str, mode: RegistryMode) -> None:
    if mode == "alias":
        client.set_registered_model_alias(name, STAGING_ALIAS, version)
    else:
        with _stage_api():
            client.transition_model_version_stage(
                name, version, STAGING_STAGE, archive_existing_versions=True
            )


def _promote(
    client: MlflowClient, name: str, version: str, previous: str | None, mode: RegistryMode
) -> None:
    # Lineage first: once the version is Production, rollback must find its predecessor.
    if previous is not None:
        client.set_model_version_tag(name, version, TAG_PREVIOUS, previous)
    client.set_model_version_tag(name, version, TAG_PROMOTED_AT, datetime.now(UTC).isoformat())
    if mode == "alias":
        client.set_registered_model_alias(name, PRODUCTION_ALIAS, version)
        # A version holds one role at a time, as with stages.
        try:
            staged = client.get_model_version_by_alias(name, STAGING_ALIAS)
        except Exception as exc:
            if not tracking.is_not_found(exc):
                raise
        else:
            if str(staged.version) == version:
                client.delete_registered_model_alias(name, STAGING_ALIAS)
    else:
        with _stage_api():
            client.transition_model_version_stage(
                name, version, PRODUCTION_STAGE, archive_existing_versions=True
            )
    if previous is not None:
        client.set_model_version_tag(name, previous, TAG_REPLACED_BY, version)


def create_version(
    client: MlflowClient,
    name: str,
    *,
    run_id: str,
    model_uri: str,
    model_id: str | None,
    data_hash: str,
    metrics: dict[str, float],
) -> ModelVersion:
    """A new version tagged with its lineage and its training metrics (one tag per
    metric, ``accuracy`` as before: the daemon's guards read them)."""
    ensure_registered_model(client, name)
    return client.create_model_version(
        name,
        source=model_uri,
        run_id=run_id,
        tags={
            "data_hash": data_hash,
            "source_run_id": run_id,
            **{k: repr(v) for k, v in metrics.items()},
        },
        model_id=model_id,
    )


def register_and_promote(
    client: MlflowClient,
    *,
    name: str,
    run_id: str,
    model_uri: str,
    model_id: str | None,
    data_hash: str,
    metrics: dict[str, float],
    x_test: pd.DataFrame,
    y_test: pd.Series[Any],
    mode: RegistryMode = "alias",
    rule: PromoteRule = "if_better",
    threshold: float = 0.9,
    metric: str = "accuracy",
) -> RegisterResult:
    """New version -> Staging -> (maybe) Production, gated on ``metric`` (one of
    ``metrics``). Versions are always returned as str."""
    mode = check_mode(mode)
    rule = check_rule(rule)
    gate = _gate_metric(metric, metrics)
    mv = create_version(
        client,
        name,
        run_id=run_id,
        model_uri=model_uri,
        model_id=model_id,
        data_hash=data_hash,
        metrics=metrics,
    )
    version = str(mv.version)
    _stage(client, name, version, mode)

    previous = current_production(client, name, mode)
    prod_score: float | None = None
    prod_error: str | None = None
    if previous is not None and rule == "if_better":
        try:
            prod_score = score_version(client, name, previous, x_test, y_test, gate)
        except Exception as exc:  # schema change, deleted artifacts: hold, do not guess
            prod_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    decision = decide(
        rule,
        candidate=metrics[gate.name],
        threshold=threshold,
        production=prod_score,
        has_production=previous is not None,
        production_error=prod_error,
        metric=gate,
    )
    promoted, reason = _apply(client, name, version, previous, mode, decision)
    return RegisterResult(
        model_name=name,
        version=version,
        promoted=promoted,
        reason=reason,
        production=version if promoted else current_production(client, name, mode),
        previous_production=previous,
        production_score=prod_score,
    )


def _gate_metric(name: str, metrics: dict[str, float]) -> Metric:
    gate = metric_of(name)
    if name not in metrics:
        raise BadInputError(
            f"metric: {name} was not measured (a {gate.task} metric; measured: {sorted(metrics)}; "
            f"a {gate.task} logs {task_metrics(gate.task)})"
        )
    return gate


def _apply(
    client: MlflowClient,
    name: str,
    version: str,
    previous: str | None,
    mode: RegistryMode,
    decision: Decision,
) -> tuple[bool, str]:
    """Promote when decided and Production has not moved meanwhile; record the decision."""
    promoted, reason = decision.promote, decision.reason
    if promoted:
        now = current_production(client, name, mode)
        if now != previous:
            promoted = False
            reason = (
                f"Production changed from {previous} to {now} while deciding; not overwriting it"
            )
        else:
            _promote(client, name, version, previous, mode)
    client.set_model_version_tag(
        name, version, TAG_DECISION, f"{'promoted' if promoted else 'held'}: {reason}"
    )
    return promoted, reason
