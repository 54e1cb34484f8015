"""``watcher report-accuracy``: log one live-accuracy observation for a model version."""

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


@click.command("report-accuracy")
@click.option("--model", required=True, help="Registered model name.")
@click.option("--version", help="Model version (default: the current Production version).")
@click.option("--accuracy", required=True, type=float, help="Live accuracy in [0, 1].")
@click.option(
    "--samples", required=True, type=int, help="Labelled predictions behind it (1 to 10**12)."
)
@click.option(
    "--at",
    "at_text",
    help="When it was measured (ISO 8601 or Unix seconds; default now; at most 5 min ahead).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the logged observation as JSON.")
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
    from watcher.backends.mlflow_observations import check_observation, report_accuracy
    from watcher.errors import UsageError

    check_observation(accuracy, samples)  # before the slow MLflow import
    if version is not None and not (version.isdigit() and int(version) > 0):
        # MLflow versions start at 1; say so now rather than after an MLflow round trip.
        raise UsageError(f"--version: {version!r} is not a model version (a positive integer)")
    at = parse_time(at_text) if at_text else None
    # A time ahead of the clock (beyond skew) would stay the newest in the window for ever.
    check_observation(accuracy, samples, at, datetime.now(UTC))
    registry = ctx.obj.registry()
    done = report_accuracy(model, accuracy, samples, version=version, at=at, registry=registry)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": done.model,
                    "version": done.version,
                    "accuracy": done.accuracy,
                    "samples": done.samples,
                    "at": done.at.isoformat(),
                    "run_id": done.run_id,
                    "sequence": done.sequence,
                }
            )
        )
    else:
        click.echo(
            f"{done.model} v{done.version}: accuracy {done.accuracy:g} over {done.samples} "
            f"samples at {done.at.isoformat()} (observation #{done.sequence + 1})"
        )
