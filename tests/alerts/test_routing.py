"""Routing: Alertmanager matcher semantics and the default route."""

from __future__ import annotations

import pytest

from alerts import AlertValidationError, Matcher, Notification, NotificationKind, Route, Router
from alerts.routing import plan_deliveries
from tests.alerts.conftest import T0, accuracy_alert

LABELS = {"alertname": "ModelAccuracyLow", "severity": "critical", "model": "iris-classifier"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ('severity="critical"', True),
        ("severity=critical", True),
        ('severity!="critical"', False),
        ('severity=~"crit"', False),  # anchored like Alertmanager
        ('severity=~"crit.*|page"', True),
        ('model!~"iris-.*"', False),
        ('team=""', True),  # a missing label matches as ""
        ('team=~".+"', False),
        ('model="iris-\\"x"', False),
    ],
)
def test_matchers(text: str, matches: bool) -> None:
    """Each matcher form behaves like Alertmanager's."""
    assert Matcher.parse(text).matches(LABELS) is matches


@pytest.mark.parametrize(
    ("text", "message"),
    [("severity", "expected name=value"), ('x=~"("', "invalid regex"), ("1x=a", "expected")],
)
def test_bad_matchers(text: str, message: str) -> None:
    """Unparseable matchers and bad regexes fail with the matcher in the message."""
    with pytest.raises(AlertValidationError, match=message):
        Matcher.parse(text)


def test_first_match_wins_continue_and_default() -> None:
    """First matching route wins; continue_ adds later matches; no match → all channels."""
    router = Router(
        ["log", "slack", "pager", "email"],
        [
            Route.of(["log"], 'severity="info"'),
            Route.of(["slack"], 'model=~"iris.*"', continue_=True),
            Route.of(["pager"], 'severity="critical"'),
            Route.of(["email"], 'severity="critical"'),
        ],
    )
    assert router.channels_for(LABELS) == ("slack", "pager")
    assert router.channels_for({"alertname": "x", "severity": "info"}) == ("log",)
    assert router.channels_for({"alertname": "x"}) == ("log", "slack", "pager", "email")


def test_routes_must_name_known_channels() -> None:
    """A route to an unconfigured channel is a configuration error naming the route."""
    with pytest.raises(AlertValidationError, match=r"routes\[0\]: unknown channel\(s\) \['sms'\]"):
        Router(["log"], [Route.of(["sms"])])


def test_plan_respects_send_resolved() -> None:
    """Resolved notifications skip channels with send_resolved=False; firing goes everywhere."""
    router = Router(["log", "slack"])
    firing = Notification(accuracy_alert(), NotificationKind.FIRING, 1)
    resolved = Notification(accuracy_alert().resolved(T0), NotificationKind.RESOLVED, 2)
    planned = plan_deliveries([firing, resolved], router, {"log": True, "slack": False})
    assert [(p.channel, p.notification.kind) for p in planned] == [
        ("log", NotificationKind.FIRING),
        ("slack", NotificationKind.FIRING),
        ("log", NotificationKind.RESOLVED),
    ]
