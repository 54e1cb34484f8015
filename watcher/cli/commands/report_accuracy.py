"""``watcher report-accuracy`` / ``report-metric``: log one live observation for a model version."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import click

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
_VIA_DAEMON = click.option(
    "--via-daemon",
    is_flag=True,
    help="Post it to the running daemon's intake (http.listen, http.token) instead of MLflow.",
)


@click.command("report-accuracy")
@_MODEL
@_VERSION
@click.option("--accuracy", required=True, type=float, help="Live accuracy in [0, 1].")
@_SAMPLES
@_AT
@_JSON
@_VIA_DAEMON
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
    via_daemon: bool,
) -> None:
    """Log a live-accuracy observation for a model version to MLflow.

    It lands in experiment `watcher-monitoring` (one run per model version,
    metrics live_accuracy and live_samples); the daemon's policy reads it on
    its next poll. With --via-daemon it goes to the daemon's intake instead
    (stored in its state DB, evaluated at once). Exit 2 for bad input (range,
    unknown model or version), 1 when MLflow or the daemon fails.
    """
    report = _Args(model, version, "accuracy", "--accuracy", accuracy, samples, at_text)
    _report(ctx, report, as_json=as_json, via_daemon=via_daemon)


@click.command("report-metric")
@_MODEL
@_VERSION
@click.option("--metric", "metric_name", required=True, help="accuracy, f1_score, rmse, mae or r2.")
@click.option("--value", required=True, type=float, help="Its live value, within its range.")
@_SAMPLES
@_AT
@_JSON
@_VIA_DAEMON
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
    via_daemon: bool,
) -> None:
    """Log a live observation of any metric (e.g. rmse) for a model version to MLflow.

    Like report-accuracy, as metric live_<metric> (live_rmse…); the daemon reads
    it for a model monitored on that metric (monitor.metric or its override).
    Exit 2 for bad input (unknown metric, value outside the metric's range,
    unknown model or version), 1 when MLflow or the daemon fails.
    """
    report = _Args(model, version, metric_name, "--value", value, samples, at_text)
    _report(ctx, report, as_json=as_json, via_daemon=via_daemon)


@dataclass(frozen=True, slots=True)
class _Args:
    model: str
    version: str | None
    metric: str
    value_option: str  # the option that gave the value: --accuracy or --value
    value: float
    samples: int
    at_text: str | None


def _report(ctx: click.Context, args: _Args, *, as_json: bool, via_daemon: bool) -> None:
    from watcher.monitor.reports import CLI_NAMES, Report, check_report, parse_at

    # Each bad field named as the option that gave it; all checked before a slow import.
    names = {**CLI_NAMES, "value": args.value_option}
    report = Report(args.model, args.version, args.metric, args.value, args.samples, None)
    check_report(report, names=names)
    at = parse_at(args.at_text, names=names) if args.at_text else None
    # A time ahead of the clock (beyond skew) would stay the newest in the window for ever.
    report = Report(args.model, args.version, args.metric, args.value, args.samples, at)
    check_report(report, datetime.now(UTC), names)
    if via_daemon:
        from watcher.cli.commands.intake_client import post_report

        done = post_report(ctx.obj.config(), report, names)
        record: dict[str, object] = {**_record(args.model, done), "id": done.id}
        label = f"intake #{done.id}"
    else:
        from watcher.backends.mlflow_observations import report_metric

        logged = report_metric(
            args.model,
            args.metric,
            args.value,
            args.samples,
            version=args.version,
            at=at,
            registry=ctx.obj.registry(),
        )
        record = {
            **_record(args.model, logged),
            "run_id": logged.run_id,
            "sequence": logged.sequence,
        }
        label = f"observation #{logged.sequence + 1}"
    if as_json:
        click.echo(json.dumps(record))
    else:
        click.echo(
            f"{args.model} v{record['version']}: {args.metric} {record[args.metric]:g} "
            f"over {record['samples']} samples at {record['at']} ({label})"
        )


class _Logged(Protocol):
    @property
    def version(self) -> str: ...
    @property
    def metric(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def samples(self) -> int: ...
    @property
    def at(self) -> datetime: ...


def _record(model: str, done: _Logged) -> dict[str, Any]:
    record: dict[str, Any] = {"model": model, "version": done.version, "metric": done.metric}
    record[done.metric] = done.value  # "accuracy": … as report-accuracy always printed
    return record | {"samples": done.samples, "at": done.at.isoformat()}
