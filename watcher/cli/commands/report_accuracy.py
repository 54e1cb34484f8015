"""``watcher report-accuracy`` / ``report-metric``: log one live observation for a model version."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click


def parse_time(text: str) -> datetime:
    """ISO 8601 (naive means UTC) or Unix seconds; UsageError naming --at otherwise."""
    from watcher.errors import UsageError

    value = text.strip()
    try:
        if value.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise UsageError(
            f"--at: {text!r} is not an ISO 8601 time or Unix seconds (e.g. 2026-01-31T12:00Z)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


_MODEL = click.option("--model", required=True, help="Registered model name.")
_VERSION = click.option(
    "--version", help="Model version (default: the current Production version)."
)
_SAMPLES = click.option(
    "--samples", required=True, type=int, help="Labelled predictions behind it (1 to 10**12)."
)
_AT = click.option(
    "--at",
    "at_text",
    help="When it was measured (ISO 8601 or Unix seconds; default now; at most 5 min ahead).",
)
_JSON = click.option(
    "--json", "as_json", is_flag=True, help="Print the logged observation as JSON."
)


@click.command("report-accuracy")
@_MODEL
@_VERSION
@click.option("--accuracy", required=True, type=float, help="Live accuracy in [0, 1].")
@_SAMPLES
@_AT
@_JSON
@click.pass_context
def report_accuracy_cmd(
    ctx: click.Context,
    *,
    model: str,
    version: str | None,
    accuracy: float,
    samples: int,
    at_text: str | None,
    as_json: bool,
) -> None:
    """Log a live-accuracy observation for a model version to MLflow.

    It lands in experiment `watcher-monitoring` (one run per model version,
    metrics live_accuracy and live_samples); the daemon's policy reads it on
    its next poll. Exit 2 for bad input (range, unknown model or version),
    1 when MLflow fails.
    """
    _report(ctx, model, version, ("accuracy", "--accuracy"), accuracy, samples, at_text, as_json)


@click.command("report-metric")
@_MODEL
@_VERSION
@click.option("--metric", "metric_name", required=True, help="accuracy, f1_score, rmse, mae or r2.")
@click.option("--value", required=True, type=float, help="Its live value, within its range.")
@_SAMPLES
@_AT
@_JSON
@click.pass_context
def report_metric_cmd(
    ctx: click.Context,
    *,
    model: str,
    version: str | None,
    metric_name: str,
    value: float,
    samples: int,
    at_text: str | None,
    as_json: bool,
) -> None:
    """Log a live observation of any metric (e.g. rmse) for a model version to MLflow.

    Like report-accuracy, as metric live_<metric> (live_rmse…); the daemon reads
    it for a model monitored on that metric (monitor.metric or its override).
    Exit 2 for bad input (unknown metric, value outside the metric's range,
    unknown model or version), 1 when MLflow fails.
    """
    from pipeline.metrics import METRICS, unknown_metric
    from watcher.errors import UsageError

    if metric_name not in METRICS:
        raise UsageError(f"--metric: {unknown_metric(metric_name)}")
    _report(ctx, model, version, (metric_name, "--value"), value, samples, at_text, as_json)


def _report(
    ctx: click.Context,
    model: str,
    version: str | None,
    metric: tuple[str, str],  # (its name, the option that gave its value)
    value: float,
    samples: int,
    at_text: str | None,
    as_json: bool,
) -> None:
    from watcher.backends.mlflow_observations import check_observation, report_metric
    from watcher.errors import UsageError

    metric_name, value_option = metric
    # Each bad field named as the option that gave it.
    names = {"value": value_option, "samples": "--samples", "at": "--at", "metric": "--metric"}
    # Before the slow MLflow import.
    check_observation(value, samples, metric_name=metric_name, names=names)
    if version is not None and not (version.isdigit() and int(version) > 0):
        # MLflow versions start at 1; say so now rather than after an MLflow round trip.
        raise UsageError(f"--version: {version!r} is not a model version (a positive integer)")
    at = parse_time(at_text) if at_text else None
    # A time ahead of the clock (beyond skew) would stay the newest in the window for ever.
    check_observation(value, samples, at, datetime.now(UTC), metric_name=metric_name, names=names)
    registry = ctx.obj.registry()
    done = report_metric(
        model, metric_name, value, samples, version=version, at=at, registry=registry
    )
    if as_json:
        record: dict[str, object] = {
            "model": done.model,
            "version": done.version,
            "metric": done.metric,
        }
        record[done.metric] = done.value  # "accuracy": … as report-accuracy always printed
        record |= {"samples": done.samples, "at": done.at.isoformat()}
        record |= {"run_id": done.run_id, "sequence": done.sequence}
        click.echo(json.dumps(record))
    else:
        click.echo(
            f"{done.model} v{done.version}: {done.metric} {done.value:g} over {done.samples} "
            f"samples at {done.at.isoformat()} (observation #{done.sequence + 1})"
        )
