"""The alert model: identity is the label set (its fingerprint), exactly as in Prometheus."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from alerts.errors import AlertValidationError

_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# FNV-1a 64-bit, as prometheus/common model.LabelSet.Fingerprint uses.
_FNV_OFFSET: Final = 14695981039346656037
_FNV_PRIME: Final = 1099511628211
_MASK64: Final = (1 << 64) - 1
_SEPARATOR: Final = 0xFF


class AlertStatus(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


class NotificationKind(StrEnum):
    FIRING = "firing"
    REPEAT = "repeat"
    RESOLVED = "resolved"


def fingerprint(labels: Mapping[str, str]) -> str:
    """Prometheus' label-set fingerprint as 16 hex digits (what Alertmanager reports)."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                h = ((h ^ byte) * _FNV_PRIME) & _MASK64
            h = ((h ^ _SEPARATOR) * _FNV_PRIME) & _MASK64
    return f"{h:016x}"


def _frozen_str_map(value: Mapping[str, str], what: str) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise AlertValidationError(f"alert {what} must be a mapping, got {type(value).__name__}")
    for key, item in value.items():
        if not isinstance(key, str) or not _LABEL_NAME.fullmatch(key):
            raise AlertValidationError(
                f"alert {what}: invalid name {key!r} (must match [a-zA-Z_][a-zA-Z0-9_]*)"
            )
        if not isinstance(item, str):
            raise AlertValidationError(
                f"alert {what}[{key!r}] must be a string, got {type(item).__name__}"
            )
    return MappingProxyType(dict(sorted(value.items())))


def _check_aware(value: datetime | None, what: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise AlertValidationError(f"alert {what} must be timezone-aware, got {value!r}")


@dataclass(frozen=True)
class Alert:
    """One alert. ``ends_at`` is None while firing and set when resolved.

    Labels identify the alert (``alertname`` is required; ``model``, ``version``,
    ``severity`` are conventional); annotations (``summary``, ``description``,
    ``runbook_url``) describe it and do not change its identity.
    """

    labels: Mapping[str, str] = field(hash=False)
    starts_at: datetime
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    ends_at: datetime | None = None
    generator_url: str = ""

    def __post_init__(self) -> None:
        labels = _frozen_str_map(self.labels, "labels")
        if not labels.get("alertname"):
            raise AlertValidationError("alert labels: 'alertname' is required and non-empty")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "annotations", _frozen_str_map(self.annotations, "annotations"))
        _check_aware(self.starts_at, "starts_at")
        _check_aware(self.ends_at, "ends_at")
        if self.ends_at is not None and self.ends_at < self.starts_at:
            raise AlertValidationError(
                f"alert {self.name!r}: ends_at {self.ends_at.isoformat()} is before "
                f"starts_at {self.starts_at.isoformat()}"
            )

    @property
    def name(self) -> str:
        return self.labels["alertname"]

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def status(self) -> AlertStatus:
        return AlertStatus.FIRING if self.ends_at is None else AlertStatus.RESOLVED

    def resolved(self, at: datetime) -> Alert:
        """This alert, resolved at ``at``."""
        return replace(self, ends_at=max(at, self.starts_at))

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.starts_at.isoformat(),
            "endsAt": None if self.ends_at is None else self.ends_at.isoformat(),
            "generatorURL": self.generator_url,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        try:
            ends = data.get("endsAt")
            return cls(
                labels=data["labels"],
                annotations=data.get("annotations") or {},
                starts_at=datetime.fromisoformat(data["startsAt"]),
                ends_at=None if ends is None else datetime.fromisoformat(ends),
                generator_url=data.get("generatorURL") or "",
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, AlertValidationError):
                raise
            raise AlertValidationError(f"stored alert is malformed: {exc!r}") from exc


def make_alert(
    alertname: str,
    *,
    starts_at: datetime,
    severity: str = "warning",
    summary: str = "",
    description: str = "",
    runbook_url: str = "",
    generator_url: str = "",
    **labels: str,
) -> Alert:
    """Shorthand: ``make_alert("ModelAccuracyLow", model="iris", version="3", ...)``."""
    annotations = {
        k: v
        for k, v in (
            ("summary", summary),
            ("description", description),
            ("runbook_url", runbook_url),
        )
        if v
    }
    return Alert(
        labels={"alertname": alertname, "severity": severity, **labels},
        annotations=annotations,
        starts_at=starts_at,
        generator_url=generator_url,
    )


@dataclass(frozen=True)
class Notification:
    """Something to tell the channels about ``alert``.

    ``sequence`` counts notifications per fingerprint; together with kind and
    channel it makes a delivery unique, so re-evaluating never sends twice.
    """

    alert: Alert
    kind: NotificationKind
    sequence: int = 0

    @property
    def status(self) -> AlertStatus:
        return (
            AlertStatus.RESOLVED if self.kind is NotificationKind.RESOLVED else AlertStatus.FIRING
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "sequence": self.sequence,
            "alert": self.alert.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notification:
        try:
            kind = NotificationKind(data["kind"])
            sequence = int(data["sequence"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AlertValidationError(f"stored notification is malformed: {exc!r}") from exc
        return cls(alert=Alert.from_dict(data["alert"]), kind=kind, sequence=sequence)
