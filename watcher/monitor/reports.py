"""One live observation reported from outside, checked by ONE set of rules for every front
end: `watcher report-accuracy` / `report-metric` (and the Python API) and the daemon's intake
(``POST /v1/accuracy``). Each fault names its field; each front end names that field its own
way (the CLI as ``--accuracy``, the intake as ``"accuracy"``), the detail is the same text.

Pure: no I/O. The registry facts (which models and versions exist) come from the caller.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.metrics import METRICS, unknown_metric
from watcher.errors import UsageError
from watcher.monitor.policy import Fault, observation_fault

# An observation older than this is no live measurement: a client bug (seconds since 1970
# sent as 0, a date typed wrong), refused rather than kept out of the window silently.
MAX_AGE = timedelta(days=365)
MAX_MODEL_NAME = 256  # characters; MLflow's own names are shorter
MAX_VERSION_DIGITS = 18  # fits SQLite's INTEGER; int() of a longer digit string is refused
MAX_TIME_TEXT = 64
MAX_FIELD_NAME = 40  # characters of an unknown field's name quoted back
EXAMPLE_TIME = "2026-01-31T12:00Z"
# The intake's JSON fields; "accuracy" is sugar for metric "accuracy" plus value.
FIELDS = ("model", "version", "accuracy", "metric", "value", "samples", "at")
CLI_NAMES = {
    "model": "--model",
    "version": "--version",
    "samples": "--samples",
    "at": "--at",
    "metric": "--metric",
}


class BadReport(UsageError):
    """A report refused for one field (exit 2 in the CLI, a 4xx from the intake)."""

    def __init__(self, fault: Fault, names: Mapping[str, str] | None = None) -> None:
        self.fault = fault
        self.field = (names or {}).get(fault.field, fault.field)
        super().__init__(f"{self.field}: {fault.detail}")


@dataclass(frozen=True, slots=True)
class Report:
    model: str
    version: str | None  # None: the current Production version
    metric: str
    value: Any  # checked to be a number by check_report
    samples: Any
    at: datetime | None  # None: now


def check_report(
    report: Report, now: datetime | None = None, names: Mapping[str, str] | None = None
) -> None:
    """Raise BadReport for the first bad field, in the order a reader checks them: metric,
    value, samples, model, version, then ``at`` against ``now`` (when given)."""
    if report.metric not in METRICS:
        raise BadReport(Fault("metric", unknown_metric(report.metric)), names)
    check_observation(report.value, report.samples, metric_name=report.metric, names=names)
    model = report.model
    if not model or len(model) > MAX_MODEL_NAME:
        detail = f"must be a model name of 1 to {MAX_MODEL_NAME} characters"
        raise BadReport(Fault("model", detail), names)
    if report.version is not None and (fault := version_fault(report.version)) is not None:
        raise BadReport(fault, names)
    if report.at is not None and now is not None:
        check_observation(
            report.value, report.samples, report.at, now, metric_name=report.metric, names=names
        )


def check_observation(
    value: Any,
    samples: Any,
    at: datetime | None = None,
    now: datetime | None = None,
    *,
    metric_name: str = "accuracy",
    names: Mapping[str, str] | None = None,
) -> None:
    """Raise BadReport naming the bad field (policy.observation_fault, and an ``at`` more
    than :data:`MAX_AGE` before ``now``), as ``names`` calls it, else by its own name."""
    fault = observation_fault(value, samples, at, now, metric_name=metric_name)
    if fault is None and at is not None and now is not None and at < now - MAX_AGE:
        days = (now - at).days
        fault = Fault(
            "at", f"{at.isoformat()} is {days:,} days old (more than {MAX_AGE.days}: not live)"
        )
    if fault is not None:
        raise BadReport(fault, names)


def version_fault(version: str) -> Fault | None:
    """MLflow versions are positive integers: said before any round trip."""
    ok = version.isascii() and version.isdigit() and len(version) <= MAX_VERSION_DIGITS
    if ok and int(version) > 0:
        return None
    return Fault("version", f"{_short(version)} is not a model version (a positive integer)")


def parse_at(
    text: str, *, zone_required: bool = False, names: Mapping[str, str] | None = None
) -> datetime:
    """ISO 8601 or (unless ``zone_required``) Unix seconds; a time without a zone is UTC
    unless ``zone_required`` (the intake: a machine states its zone)."""
    value = text.strip()
    wanted = "ISO 8601 time with a timezone" if zone_required else "ISO 8601 time or Unix seconds"
    bad = Fault("at", f"{_short(text)} is not an {wanted} (e.g. {EXAMPLE_TIME})")
    if len(value) > MAX_TIME_TEXT:
        raise BadReport(bad, names)
    try:
        if not zone_required and value.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise BadReport(bad, names) from None
    if parsed.tzinfo is None:
        if zone_required:
            raise BadReport(bad, names)
        return parsed.replace(tzinfo=UTC)
    return parsed


# Registry facts: the CLI learns them from MLflow, the intake from the monitor's last poll.


def unknown_model(model: str) -> Fault:
    return Fault("model", f"no registered model named {model!r}")


def no_production(model: str) -> Fault:
    return Fault("version", f"model {model!r} has no Production version; give one to report for")


def unknown_version(model: str, version: str) -> Fault:
    return Fault("version", f"model {model!r} has no version {version}")


def resolve_version(
    model: str,
    version: str | None,
    production: str | None,
    versions: Collection[str],
    names: Mapping[str, str] | None = None,
) -> str:
    """The version a report is for: ``version``, else Production; BadReport otherwise."""
    if version is None:
        if production is None:
            raise BadReport(no_production(model), names)
        return production
    if version not in versions:
        raise BadReport(unknown_version(model, version), names)
    return version


# The intake's JSON body -----------------------------------------------------------------


def parse_report(body: bytes, now: datetime) -> tuple[Report, dict[str, str]]:
    """The report a JSON body holds, checked by :func:`check_report`, and the names its
    fields go by (``{"value": "accuracy"}`` for the accuracy form); BadReport otherwise."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadReport(Fault("body", f"not JSON: {_short(str(exc), 80)}")) from None
    if not isinstance(doc, dict):
        raise BadReport(Fault("body", "must be a JSON object"))
    for key in doc:
        if key not in FIELDS:
            expected = "model, version, accuracy (or metric and value), samples, at"
            name = key if len(key) <= MAX_FIELD_NAME else f"{key[: MAX_FIELD_NAME - 1]}…"
            raise BadReport(Fault(name, f"unknown field (expected: {expected})"))
    names = {"value": "accuracy"} if "accuracy" in doc else {}
    if "accuracy" in doc and ("metric" in doc or "value" in doc):
        raise BadReport(Fault("accuracy", "give accuracy, or metric and value, not both"))
    if "accuracy" in doc:
        metric, value = "accuracy", doc["accuracy"]
    elif "metric" not in doc:
        raise BadReport(Fault("accuracy", "missing (or metric and value)"))
    else:
        metric = _text(doc, "metric") or ""
        if "value" not in doc:
            raise BadReport(Fault("value", "missing"))
        value = doc["value"]
    if "samples" not in doc:
        raise BadReport(Fault("samples", "missing"))
    model = _text(doc, "model", names=names) or ""
    version = _text(doc, "version", optional=True, names=names)
    at_text = _text(doc, "at", optional=True, names=names)
    at = parse_at(at_text, zone_required=True, names=names) if at_text is not None else None
    report = Report(model, version, metric, value, doc["samples"], at)
    check_report(report, now, names)
    return report, names


def _text(
    doc: Mapping[str, Any],
    key: str,
    *,
    optional: bool = False,
    names: Mapping[str, str] | None = None,
) -> str | None:
    """``doc[key]``, a string; None when absent and ``optional``."""
    if key not in doc:
        if optional:
            return None
        raise BadReport(Fault(key, "missing"), names)
    value = doc[key]
    if not isinstance(value, str):
        raise BadReport(Fault(key, f"must be a string, got {_short(value)}"), names)
    return value


def _short(value: object, limit: int = 24) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}…{text[-3:]}"
