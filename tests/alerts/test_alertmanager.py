"""The Alertmanager notifier against a real Prometheus Alertmanager."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from alerts import (
    Alert,
    AlertStore,
    Dispatcher,
    Notification,
    NotificationKind,
    NotifyError,
    make_alert,
)
from alerts.notifiers.alertmanager import AlertmanagerNotifier

pytestmark = pytest.mark.service


def _active(url: str, alertname: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{url}/api/v2/alerts", params={"filter": f'alertname="{alertname}"'}, timeout=5
    )
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()
    return alerts


def _wait_for(url: str, alertname: str, *, present: bool, deadline_s: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + deadline_s
    while True:
        found = _active(url, alertname)
        if bool(found) == present or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_alert_visible_while_firing_and_gone_after_resolve(
    alertmanager: str, store: AlertStore
) -> None:
    """Firing shows up in GET /api/v2/alerts with our fingerprint; resolving removes it."""
    now = datetime.now(UTC)
    alert = make_alert(
        "AmLifecycle",
        starts_at=now,
        severity="critical",
        summary="iris v3 accuracy low",
        model="iris",
        version="3",
    )
    with AlertmanagerNotifier(alertmanager) as notifier:
        _firing_then_resolved(alertmanager, store, notifier, alert, now)


def _firing_then_resolved(
    url: str, store: AlertStore, notifier: AlertmanagerNotifier, alert: Alert, now: datetime
) -> None:
    dispatcher = Dispatcher(store, [notifier])
    dispatcher.process("policy", [alert], now)
    report = dispatcher.deliver_due(now)
    assert report.delivered == 1
    found = _wait_for(url, "AmLifecycle", present=True)
    assert len(found) == 1
    assert alert.fingerprint == found[0]["fingerprint"]
    assert (found[0]["labels"]) == {
        "alertname": "AmLifecycle",
        "severity": "critical",
        "model": "iris",
        "version": "3",
    }
    assert found[0]["annotations"]["summary"] == "iris v3 accuracy low"

    later = datetime.now(UTC)
    dispatcher.process("policy", [], later)
    assert dispatcher.deliver_due(later).delivered == 1
    assert _wait_for(url, "AmLifecycle", present=False) == []


def test_firing_alerts_are_resent_every_resend_interval(
    alertmanager: str, store: AlertStore, request: pytest.FixtureRequest
) -> None:
    """The dispatcher re-pushes active alerts to Alertmanager once per resend_interval."""
    now = datetime.now(UTC)
    alert = make_alert("AmResend", starts_at=now, model="iris", version="4")
    notifier = AlertmanagerNotifier(alertmanager, resend_interval=timedelta(minutes=1))
    dispatcher = Dispatcher(store, [notifier])
    request.addfinalizer(dispatcher.close)
    dispatcher.process("policy", [alert], now)

    first = dispatcher.deliver_due(now)
    assert (first.delivered, first.resent) == (1, 1)
    assert dispatcher.deliver_due(now + timedelta(seconds=30)).resent == 0
    assert dispatcher.deliver_due(now + timedelta(seconds=61)).resent == 1
    assert len(_wait_for(alertmanager, "AmResend", present=True)) == 1
    dispatcher.process("policy", [], datetime.now(UTC))
    dispatcher.deliver_due(datetime.now(UTC))
    assert _wait_for(alertmanager, "AmResend", present=False) == []


def test_info_events_never_active_in_alertmanager(
    alertmanager: str, store: AlertStore, request: pytest.FixtureRequest
) -> None:
    """ModelVersionCreated / ModelProductionChanged (severity info, sent as one-off events
    like the monitor sends them) are delivered, but never shown as alerts (#13)."""
    now = datetime.now(UTC)
    dispatcher = Dispatcher(store, [AlertmanagerNotifier(alertmanager)])
    request.addfinalizer(dispatcher.close)
    info = [
        make_alert(name, starts_at=now, severity="info", summary="iris v5", model="iris")
        for name in ("ModelVersionCreated", "ModelProductionChanged")
    ]
    marker = make_alert("AmRolledBack", starts_at=now, severity="critical", model="iris")
    notes = [Notification(a, NotificationKind.FIRING, i) for i, a in enumerate(info, 1)]
    dispatcher.enqueue(notes, now)
    assert dispatcher.deliver_due(now).delivered == 2  # done: not retried forever
    dispatcher.enqueue([Notification(marker, NotificationKind.FIRING, 3)], now)
    assert dispatcher.deliver_due(now).delivered == 1
    assert len(_wait_for(alertmanager, "AmRolledBack", present=True)) == 1  # it all arrived
    for alert in info:
        assert _active(alertmanager, alert.name) == []


def test_rejected_payload_is_a_notify_error(alertmanager: str) -> None:
    """A 4xx from Alertmanager becomes NotifyError with the status, not a crash."""
    bad = make_alert("AmBad", starts_at=datetime.now(UTC), generator_url="::not a uri::")
    with (
        AlertmanagerNotifier(alertmanager) as notifier,
        pytest.raises(NotifyError, match="HTTP 422"),
    ):
        notifier.send([Notification(bad, NotificationKind.FIRING, 1)])
