"""Alert model: identity, validation, serialisation."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from alerts import Alert, AlertStatus, AlertValidationError, Notification, NotificationKind
from alerts.model import fingerprint
from tests.alerts.conftest import T0, accuracy_alert


class TestFingerprint:
    def test_known_prometheus_values(self) -> None:
        """Matches prometheus/common's FNV-1a label-set fingerprint (empty set = FNV offset)."""
        assert fingerprint({}) == "cbf29ce484222325"
        # Order-independent; test_alertmanager checks equality with the real server's value.
        assert fingerprint({"b": "2", "a": "1"}) == fingerprint({"a": "1", "b": "2"})

    def test_annotations_and_times_do_not_change_identity(self) -> None:
        """Only labels count: a new summary or start time is the same alert."""
        alert = accuracy_alert()
        other = Alert(
            labels=dict(alert.labels),
            annotations={"summary": "different"},
            starts_at=T0 + timedelta(hours=1),
        )
        assert other.fingerprint == alert.fingerprint
        assert accuracy_alert(version="4").fingerprint != alert.fingerprint

    def test_label_boundaries_are_unambiguous(self) -> None:
        """The separator byte keeps {a="bc"} and {ab="c"} apart."""
        assert fingerprint({"a": "bc"}) != fingerprint({"ab": "c"})


class TestValidation:
    @pytest.mark.parametrize(
        ("labels", "message"),
        [
            ({}, "'alertname' is required"),
            ({"alertname": ""}, "'alertname' is required"),
            ({"alertname": "x", "bad-name": "v"}, "invalid name 'bad-name'"),
            ({"alertname": "x", "version": 3}, r"labels\['version'\] must be a string"),
        ],
    )
    def test_bad_labels_name_the_field(self, labels: dict[str, object], message: str) -> None:
        """Malformed labels are rejected with a message naming the offending label."""
        with pytest.raises(AlertValidationError, match=message):
            Alert(labels=labels, starts_at=T0)  # type: ignore[arg-type]

    def test_naive_datetime_rejected(self) -> None:
        """starts_at must be timezone-aware."""
        with pytest.raises(AlertValidationError, match="starts_at must be timezone-aware"):
            Alert(labels={"alertname": "x"}, starts_at=datetime(2026, 1, 1))  # noqa: DTZ001

    def test_end_before_start_rejected(self) -> None:
        """An alert cannot end before it started."""
        with pytest.raises(AlertValidationError, match="is before starts_at"):
            Alert(labels={"alertname": "x"}, starts_at=T0, ends_at=T0 - timedelta(seconds=1))


def test_status_and_resolve() -> None:
    """An alert is firing until resolved; resolving sets ends_at and keeps it immutable."""
    alert = accuracy_alert()
    ended = alert.resolved(T0 + timedelta(minutes=5))
    assert (alert.status, ended.status) == (AlertStatus.FIRING, AlertStatus.RESOLVED)
    assert ended.ends_at == T0 + timedelta(minutes=5)
    assert alert.ends_at is None
    with pytest.raises(AttributeError):
        alert.generator_url = "x"  # type: ignore[misc]


def test_notification_round_trip() -> None:
    """Notifications survive to_dict/from_dict unchanged (that is how the outbox stores them)."""
    note = Notification(
        accuracy_alert().resolved(T0 + timedelta(hours=1)), NotificationKind.RESOLVED, 7
    )
    assert Notification.from_dict(note.to_dict()) == note
    assert note.status is AlertStatus.RESOLVED


def test_labels_are_read_only() -> None:
    """Labels cannot be mutated after construction (the fingerprint would silently change)."""
    alert = accuracy_alert()
    with pytest.raises(TypeError):
        alert.labels["model"] = "other"  # type: ignore[index]
