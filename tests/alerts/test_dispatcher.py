"""Dispatcher: outbox delivery, retries with backoff, isolation of failing channels, health."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta

import pytest

from alerts import AlertStore, Backoff, Dispatcher, Notification, NotificationKind, NotifyError
from alerts.notifiers.webhook import WebhookNotifier
from tests.alerts.conftest import T0, Receiver, accuracy_alert

M = timedelta(minutes=1)


class Recording:
    """A channel that records batches; fails while ``failures`` > 0."""

    def __init__(self, name: str, failures: int = 0, send_resolved: bool = True) -> None:
        self.name = name
        self.send_resolved = send_resolved
        self.failures = failures
        self.batches: list[list[tuple[str, NotificationKind]]] = []

    def send(self, notifications: Sequence[Notification]) -> None:
        if self.failures:
            self.failures -= 1
            raise NotifyError(self.name, "HTTP 503")
        self.batches.append([(n.alert.labels["version"], n.kind) for n in notifications])


def test_backoff_is_exponential_capped_and_jittered() -> None:
    """Delay doubles per attempt up to the cap; jitter spans [d/2, d]."""
    backoff = Backoff(base=timedelta(seconds=10), cap=timedelta(seconds=60))
    assert [backoff.delay(n, 1.0).total_seconds() for n in range(1, 6)] == [10, 20, 40, 60, 60]
    assert backoff.delay(3, 0.0) == timedelta(seconds=20)


def test_failing_channel_does_not_block_others(store: AlertStore) -> None:
    """One broken channel backs off; the other delivers at once; health flags the broken one."""
    good, bad = Recording("good"), Recording("bad", failures=10)
    dispatcher = Dispatcher(
        store, [good, bad], failing_after=3, random=lambda: 1.0, backoff=Backoff(base=M, cap=10 * M)
    )
    dispatcher.process("policy", [accuracy_alert()], T0)

    report = dispatcher.deliver_due(T0)
    assert (report.delivered, report.failed, report.errors) == (1, 1, {"bad": "HTTP 503"})
    assert good.batches == [[("3", NotificationKind.FIRING)]]
    assert not dispatcher.notifier_failing

    # Not due yet: nothing is attempted before next_attempt_at.
    assert dispatcher.deliver_due(T0 + 30 * timedelta(seconds=1)).failed == 0
    dispatcher.deliver_due(T0 + M)  # attempt 2
    report = dispatcher.deliver_due(T0 + 3 * M)  # attempt 3 (backoff 2 min)
    assert report.failing_channels == frozenset({"bad"})
    assert dispatcher.notifier_failing
    assert good.batches == [[("3", NotificationKind.FIRING)]]  # never re-sent


def test_order_per_channel_survives_an_outage(store: AlertStore) -> None:
    """Firing then resolved, both queued during an outage, arrive in order, in two batches."""
    channel = Recording("c", failures=1)
    dispatcher = Dispatcher(store, [channel], random=lambda: 0.0, backoff=Backoff(base=M))
    dispatcher.process("policy", [accuracy_alert()], T0)
    dispatcher.deliver_due(T0)  # fails, retry at T0 + 30 s
    dispatcher.process("policy", [], T0 + timedelta(seconds=10))
    assert dispatcher.deliver_due(T0 + timedelta(seconds=20)).delivered == 0  # head not due
    report = dispatcher.deliver_due(T0 + M)
    assert report.delivered == 2
    assert channel.batches == [[("3", NotificationKind.FIRING)], [("3", NotificationKind.RESOLVED)]]
    assert not dispatcher.notifier_failing


def test_reprocessing_never_duplicates(store: AlertStore) -> None:
    """Evaluating the same active set again and again yields one firing delivery."""
    channel = Recording("c")
    dispatcher = Dispatcher(store, [channel])
    for minute in range(5):
        dispatcher.process("policy", [accuracy_alert()], T0 + minute * M)
        dispatcher.deliver_due(T0 + minute * M)
    assert channel.batches == [[("3", NotificationKind.FIRING)]]


def test_full_lifecycle_over_two_channels(store: AlertStore) -> None:
    """Over 9 h of ticks each channel gets one firing, repeats at 4 h and 8 h, one resolve."""
    log, pager = Recording("log"), Recording("pager", send_resolved=False)
    dispatcher = Dispatcher(store, [log, pager])
    for minute in range(0, 9 * 60, 5):
        now = T0 + minute * M
        dispatcher.process("policy", [accuracy_alert()] if minute < 500 else [], now)
        dispatcher.deliver_due(now)
    kinds = [NotificationKind.FIRING, NotificationKind.REPEAT, NotificationKind.REPEAT]
    assert [b[0][1] for b in log.batches] == [*kinds, NotificationKind.RESOLVED]
    assert [b[0][1] for b in pager.batches] == kinds
    assert [d.created_at - T0 for d in store.deliveries("log")] == [
        timedelta(0),
        timedelta(hours=4),
        timedelta(hours=8),
        timedelta(minutes=500),
    ]


def test_unexpected_exception_is_contained(store: AlertStore) -> None:
    """A notifier raising something other than NotifyError is retried, not propagated."""

    class Broken(Recording):
        def send(self, notifications: Sequence[Notification]) -> None:
            raise KeyError("secret-looking detail")

    dispatcher = Dispatcher(store, [Broken("b")])
    dispatcher.process("policy", [accuracy_alert()], T0)
    report = dispatcher.deliver_due(T0)
    assert report.errors == {"b": "unexpected KeyError"}
    assert store.pending()[0].last_error == "unexpected KeyError"


@pytest.mark.service
def test_receiver_500_three_times_gets_alert_exactly_once(
    store: AlertStore, receiver: Receiver
) -> None:
    """A real HTTP receiver failing 3x then 200 receives the firing alert exactly once."""
    receiver.statuses = [500, 500, 500]
    with WebhookNotifier(receiver.url + "/hook", timeout=5) as notifier:
        dispatcher = Dispatcher(
            store, [notifier], backoff=Backoff(base=M), random=lambda: 1.0, failing_after=3
        )
        dispatcher.process("policy", [accuracy_alert()], T0)
        now = T0
        outcomes = []
        for _ in range(6):
            report = dispatcher.deliver_due(now)
            outcomes.append((report.delivered, report.failed))
            now += timedelta(hours=1)  # beyond any backoff
            dispatcher.process("policy", [accuracy_alert()], T0 + 10 * M)  # re-evaluation
    assert outcomes == [(0, 1), (0, 1), (0, 1), (1, 0), (0, 0), (0, 0)]
    assert len(receiver.requests) == 4
    successful = json.loads(receiver.requests[-1].body)
    assert [a["fingerprint"] for a in successful["alerts"]] == [accuracy_alert().fingerprint]
    (delivery,) = store.deliveries()
    assert (delivery.attempts, delivery.last_error) == (4, None)
    assert not dispatcher.notifier_failing
