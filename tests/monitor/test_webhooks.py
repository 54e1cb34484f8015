"""Registry webhooks with fakes: the signature check (against MLflow's own signer), the
receiver's replies and de-duplication, hints becoming one-model reads, and the health
check that sets the cadence. The real MLflow server: tests/monitor/test_webhooks_mlflow.py."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature
from structlog.testing import capture_logs

from tests.monitor.conftest import Channels
from watcher.config import MonitorConfig
from watcher.monitor.poll import Monitor
from watcher.monitor.signature import TEST_DATA, TEST_EVENT, Delivery, Refusal, verify
from watcher.monitor.webhook_health import WebhookHealth
from watcher.monitor.webhooks import Receiver
from watcher.runtime.metrics import Metrics
from watcher.runtime.routes import Request
from watcher.runtime.state import StateStore
from watcher.testing import FakeClock, FakeRegistry, FakeWebhooks, MemoryObservations

SECRET = "s3cret-for-tests"
MODEL, OTHER = "iris-classifier", "iris-regressor"
URL = "http://127.0.0.1:9464/hooks/mlflow"


def delivery(
    clock: FakeClock,
    name: str = MODEL,
    *,
    event: str = "model_version_alias.created",
    data: dict[str, object] | None = None,
    delivery_id: str | None = None,
    age: float = 0.0,
    secret: str = SECRET,
) -> Request:
    """A delivery exactly as MLflow sends it (its own signer, its body layout)."""
    entity, action = event.rsplit(".", 1)
    body = json.dumps(
        {
            "entity": entity,
            "action": action,
            "timestamp": clock.now().isoformat(),
            "data": data if data is not None else {"name": name, "alias": "production"},
        }
    )
    did = delivery_id or str(uuid.uuid4())
    ts = str(int(clock.now().timestamp() - age))
    headers = {
        "content-type": "application/json",
        "x-mlflow-delivery-id": did,
        "x-mlflow-timestamp": ts,
        "x-mlflow-signature": _generate_hmac_signature(secret, did, ts, body),
    }
    return Request("POST", "/hooks/mlflow", headers, body.encode(), "127.0.0.1")


# The verifier ---------------------------------------------------------------


def test_an_mlflow_signed_delivery_verifies(clock: FakeClock) -> None:
    req = delivery(clock)
    found = verify(SECRET, req.headers, req.body, clock.now().timestamp(), 300)
    assert isinstance(found, Delivery)
    assert (MODEL, "model_version_alias.created", False) == (found.model, found.event, found.test)


@pytest.mark.parametrize(
    ("change", "status", "names"),
    [
        ({"x-mlflow-signature": None}, 401, "X-MLflow-Signature"),
        ({"x-mlflow-signature": "v1,AAAA"}, 401, "X-MLflow-Signature"),
        ({"x-mlflow-signature": "v2,whatever"}, 401, "X-MLflow-Signature"),
        ({"x-mlflow-signature": "v1,not base64!"}, 401, "X-MLflow-Signature"),
        ({"x-mlflow-timestamp": None}, 400, "X-MLflow-Timestamp"),
        ({"x-mlflow-delivery-id": None}, 400, "X-MLflow-Delivery-Id"),
        ({"x-mlflow-delivery-id": "x" * 200}, 400, "X-MLflow-Delivery-Id"),
    ],
)
def test_a_bad_header_is_refused_naming_it(
    clock: FakeClock, change: dict[str, str | None], status: int, names: str
) -> None:
    req = delivery(clock)
    headers = {k: v for k, v in {**req.headers, **change}.items() if v is not None}
    refused = verify(SECRET, headers, req.body, clock.now().timestamp(), 300)
    assert isinstance(refused, Refusal)
    assert status == refused.status
    assert names in refused.message


def test_a_tampered_body_or_another_secret_is_401(clock: FakeClock) -> None:
    req = delivery(clock)
    now = clock.now().timestamp()
    tampered = req.body.replace(MODEL.encode(), b"iris-other")
    assert 401 == verify(SECRET, req.headers, tampered, now, 300).status  # type: ignore[union-attr]
    assert 401 == verify("other", req.headers, req.body, now, 300).status  # type: ignore[union-attr]


@pytest.mark.parametrize("age", [301.0, -301.0])
def test_a_stale_or_future_timestamp_is_400(clock: FakeClock, age: float) -> None:
    req = delivery(clock, age=age)
    refused = verify(SECRET, req.headers, req.body, clock.now().timestamp(), 300)
    assert isinstance(refused, Refusal)
    assert 400 == refused.status
    assert ("old" if age > 0 else "in the future") in refused.message
    ok = delivery(clock, age=age * 0.9)
    assert isinstance(verify(SECRET, ok.headers, ok.body, clock.now().timestamp(), 300), Delivery)


def test_a_signed_body_that_is_no_delivery_is_400(clock: FakeClock) -> None:
    did, ts = "d-1", str(int(clock.now().timestamp()))
    for body, names in (("nope", "JSON"), ("[1]", "object"), ('{"data": {}}', "entity")):
        headers = {
            "x-mlflow-delivery-id": did,
            "x-mlflow-timestamp": ts,
            "x-mlflow-signature": _generate_hmac_signature(SECRET, did, ts, body),
        }
        refused = verify(SECRET, headers, body.encode(), clock.now().timestamp(), 300)
        assert isinstance(refused, Refusal)
        assert (400, True) == (refused.status, names in refused.message)


# The receiver ----------------------------------------------------------------


@pytest.fixture
def receiver(tmp_path: Path, clock: FakeClock) -> Iterator[Receiver]:
    rec = Receiver(SECRET, 300, ["iris-*"], tmp_path / "state", clock, metrics=Metrics())
    yield rec
    rec.close()


def test_the_receiver_hints_dedups_and_ignores(receiver: Receiver, clock: FakeClock) -> None:
    """Accepted → a hint and a wake; the same delivery id again → a 200 no-op; an
    unwatched model and MLflow's test payload → acknowledged, no hint; nothing of the
    secret or the signature in the log lines."""
    woken: list[int] = []
    receiver.bind_wake(lambda: woken.append(1))
    first = delivery(clock)
    with capture_logs() as logs:
        assert 202 == receiver.handle(first).status
        assert {MODEL} == receiver.hints.drain()
        again = receiver.handle(first)
        assert (200, "duplicate") == (again.status, again.body["status"])
        assert 200 == receiver.handle(delivery(clock, "fraud-model")).status
        test = delivery(clock, "example_model", event=TEST_EVENT, data=dict(TEST_DATA))
        assert "ignored" == receiver.handle(test).body["status"]
        assert 401 == receiver.handle(delivery(clock, secret="wrong")).status
    assert not receiver.hints.pending()
    assert [1] == woken
    assert receiver.last_delivery() == clock.now()
    text = repr(logs)
    assert SECRET not in text
    assert first.headers["x-mlflow-signature"].split(",", 1)[1] not in text


def test_delivery_ids_outlive_a_restart_and_are_pruned(
    receiver: Receiver, clock: FakeClock, tmp_path: Path
) -> None:
    """The ids are in the state DB (a restarted receiver still refuses a replay), and
    pruned once past twice the tolerance: the table stays bounded."""
    first = delivery(clock)
    assert 202 == receiver.handle(first).status
    receiver.close()
    again = Receiver(SECRET, 300, ["iris-*"], tmp_path / "state", clock)
    try:
        assert "duplicate" == again.handle(first).body["status"]
        clock.advance(601)
        assert 202 == again.handle(delivery(clock)).status
        assert 400 == again.handle(first).status  # stale now, whatever the table says
        state = again.deliveries._state
        assert state is not None
        rows = state.conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0]
        assert 1 == rows
    finally:
        again.close()


# Hints → one-model reads through the monitor -------------------------------


def make_monitor(
    state: StateStore,
    clock: FakeClock,
    channels: Channels,
    registry: FakeRegistry,
    receiver: Receiver,
) -> Monitor:
    config = MonitorConfig.model_validate({"models": ["iris-*"], "min_samples": 1})
    mon = Monitor(
        config,
        state,
        registry,
        MemoryObservations(),
        channels.alerting,
        clock=clock,
        use_scheduler=False,
        retry_delay=0.0,
        receiver=receiver,
    )
    mon.start()
    return mon


def kinds(state: StateStore) -> list[tuple[str, str | None]]:
    return [(e.kind, e.model) for e in state.events(limit=100)]


def test_a_hint_reads_one_model_and_leaves_the_others(
    state: StateStore, clock: FakeClock, channels: Channels, receiver: Receiver
) -> None:
    """A burst of hints for one model is one read of that model (1 call); the diff sees
    the move; the other watched model is not taken for deleted; a repeated or late hint
    changes nothing (the read is of the current truth)."""
    reg = FakeRegistry()
    for name in (MODEL, OTHER):
        reg.create_version(name)
        reg.create_version(name)
        reg.set_production(name, "1")
    mon = make_monitor(state, clock, channels, reg, receiver)
    mon.poll_once()
    mon.tick()
    reg.set_production(MODEL, "2")
    for _ in range(5):
        receiver.handle(delivery(clock))
    before = reg.calls
    result = mon.read_hinted()
    assert result is not None
    assert (frozenset({MODEL}), 1) == (result.only, reg.calls - before)
    mon.tick()
    events = kinds(state)
    assert ("registry.production_changed", MODEL) == events[-1]
    assert ("registry.model_deleted", OTHER) not in events
    receiver.handle(delivery(clock))  # a duplicate hint: same truth, no event
    mon.read_hinted()
    mon.tick()
    assert events == kinds(state)
    assert mon.read_hinted() is None  # nothing pending: no call
    reg.delete_model(MODEL)  # a hint about a model gone: the one-model read says so
    receiver.handle(delivery(clock))
    mon.read_hinted()
    mon.tick()
    assert ("registry.model_deleted", MODEL) == kinds(state)[-1]
    assert ("registry.model_deleted", OTHER) not in kinds(state)


def test_a_failed_hinted_read_is_dropped(
    state: StateStore, clock: FakeClock, channels: Channels, receiver: Receiver
) -> None:
    """MLflow down during a hinted read: logged, no result, no outage (the poll owns that)."""
    reg = FakeRegistry()
    reg.create_version(MODEL)
    mon = make_monitor(state, clock, channels, reg, receiver)
    receiver.handle(delivery(clock))
    reg.down = True
    with capture_logs() as logs:
        assert mon.read_hinted() is None
    assert ["hinted_read_failed"] == [e["event"] for e in logs]
    assert not receiver.hints.pending()


# Health → cadence -------------------------------------------------------------


def health(receiver: Receiver, clock: FakeClock, port: FakeWebhooks) -> WebhookHealth:
    return WebhookHealth(port, URL, receiver.last_delivery, 300.0, clock)


def test_health_needs_our_active_webhook_and_a_delivery_that_arrives(
    receiver: Receiver, clock: FakeClock
) -> None:
    """Not installed, a test delivery refused (wrong secret) or lost → fallback with the
    reason; installed and reaching us → healthy. Checks at most once per reconcile."""
    port = FakeWebhooks(deliver=lambda url: receiver.handle(delivery(clock)).status)
    hooks = health(receiver, clock, port)
    hooks.check()
    assert (False, True) == (
        hooks.status().healthy,
        "webhooks install" in str(hooks.status().reason),
    )
    hooks.check()  # the start-up check runs once more (the endpoint may not listen yet)
    port.install(URL, SECRET)
    calls = port.calls
    hooks.check()  # then not before a reconcile interval: same status, no call
    assert ("webhooks install" in str(hooks.status().reason), calls) == (True, port.calls)
    clock.advance(300)
    hooks.check()
    assert (True, None) == (hooks.status().healthy, hooks.status().reason)
    port.deliver = lambda url: receiver.handle(delivery(clock, secret="old")).status
    clock.advance(1800)
    hooks.check()
    assert "refused MLflow's test delivery" in str(hooks.status().reason)
    port.deliver = lambda url: 200  # answered by someone else: never reached us
    clock.advance(300)
    hooks.check()
    assert "did not reach this watcher" in str(hooks.status().reason)
    port.down = True
    clock.advance(300)
    hooks.check()
    assert "cannot check the webhook" in str(hooks.status().reason)


def test_a_delivery_in_fallback_checks_again_at_once(receiver: Receiver, clock: FakeClock) -> None:
    """`webhooks install` while the daemon is in fallback: its test delivery arrives, and
    the next check runs then, not a reconcile interval later; deliveries to a webhook
    broken otherwise buy one early check per regular one, not one per poll."""
    port = FakeWebhooks(deliver=lambda url: receiver.handle(delivery(clock)).status)
    hooks = health(receiver, clock, port)
    hooks.check()
    hooks.check()  # the start-up retry
    assert not hooks.status().healthy
    clock.advance(1)
    port.install(URL, SECRET)
    assert 202 == receiver.handle(delivery(clock)).status  # install's delivery, say
    clock.advance(1)
    hooks.check()
    assert hooks.status().healthy
    port.remove(URL)  # broken again (found once no delivery came for SELF_TEST_EVERY)
    clock.advance(1801)
    hooks.check()
    assert not hooks.status().healthy
    calls = port.calls
    for _ in range(3):  # deliveries still arriving (another sender, say)
        clock.advance(1)
        assert 202 == receiver.handle(delivery(clock)).status
        hooks.check()
    assert 1 == port.calls - calls  # one early check (finds none: 1 call), then none


def test_a_recent_delivery_makes_the_check_free(receiver: Receiver, clock: FakeClock) -> None:
    """Deliveries arriving prove the path: no MLflow call until SELF_TEST_EVERY passes
    without one. An idle hour costs 2 checks of 2 calls."""
    port = FakeWebhooks(deliver=lambda url: receiver.handle(delivery(clock)).status)
    port.install(URL, SECRET)
    hooks = health(receiver, clock, port)
    port.calls = 0
    for _ in range(12):  # one idle hour of reconciles
        hooks.check()
        assert hooks.status().healthy
        clock.advance(300)
    assert 4 == port.calls


def test_the_cadence_follows_health_and_warns_once_per_episode(
    state: StateStore, clock: FakeClock, channels: Channels, receiver: Receiver
) -> None:
    port = FakeWebhooks(deliver=lambda url: receiver.handle(delivery(clock)).status)
    hooks = health(receiver, clock, port)
    reg = FakeRegistry()
    reg.create_version(MODEL)
    config = MonitorConfig.model_validate({"models": ["iris-*"], "poll_interval": "30s"})
    mon = Monitor(
        config,
        state,
        reg,
        None,
        channels.alerting,
        clock=clock,
        use_scheduler=False,
        receiver=receiver,
        webhooks=hooks,
    )
    mon.start()
    with capture_logs() as logs:
        for _ in range(3):  # not installed: fallback, warned once
            mon.poll_once()
            mon.tick()
            clock.advance(300)
        port.install(URL, SECRET)
        mon.poll_once()
        mon.tick()
    assert ["webhooks_fallback", "webhooks_healthy"] == [
        e["event"] for e in logs if str(e["event"]).startswith("webhooks_")
    ]
    detail = mon.health().detail
    assert "healthy" == detail["webhooks"]
    assert mon._hooks.poll_every == 300.0
    clock.advance(timedelta(hours=1).total_seconds())
    port.hooks.clear()
    mon.poll_once()
    mon.tick()
    assert ("fallback", 30.0) == (mon.health().detail["webhooks"], mon._hooks.poll_every)


def test_the_scheduler_interval_follows_the_webhooks(
    state: StateStore, clock: FakeClock, channels: Channels, receiver: Receiver
) -> None:
    """With the real APScheduler job: healthy → the job runs every reconcile_interval;
    the webhook gone → back to poll_interval."""
    port = FakeWebhooks(deliver=lambda url: receiver.handle(delivery(clock)).status)
    port.install(URL, SECRET)
    hooks = WebhookHealth(port, URL, receiver.last_delivery, 3600.0, clock)
    reg = FakeRegistry()
    reg.create_version(MODEL)
    config = MonitorConfig.model_validate(
        {
            "models": ["iris-*"],
            "poll_interval": "1h",
            "reconcile_interval": "2h",
            "webhooks": {"secret": SECRET},
        }
    )
    mon = Monitor(
        config, state, reg, None, channels.alerting, clock=clock, receiver=receiver, webhooks=hooks
    )
    mon.start()
    try:

        def interval() -> float:
            job = mon._schedule._scheduler.get_job("registry-poll")
            return float(job.trigger.interval.total_seconds())

        deadline = time.monotonic() + 60
        while hooks.status().checked_at is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the first poll runs at start, on the poll thread
        mon.tick()
        assert (True, 7200.0) == (hooks.status().healthy, interval())
        port.hooks.clear()
        clock.advance(7200)
        mon.poll_once()
        mon.tick()
        assert (False, 3600.0) == (hooks.status().healthy, interval())
    finally:
        mon.stop()


def test_refused_deliveries_are_one_log_line_a_minute(receiver: Receiver, clock: FakeClock) -> None:
    """Forged deliveries are unauthenticated: each is counted, one line a minute says how
    many (a flood of them must not flood the journal)."""
    with capture_logs() as logs:
        for _ in range(20):
            assert 401 == receiver.handle(delivery(clock, secret="wrong-secret-123")).status
        clock.advance(61)
        assert 401 == receiver.handle(delivery(clock, secret="wrong-secret-123")).status
    refused = [e for e in logs if e["event"] == "webhook_refused"]
    assert [1, 20] == [e["refused"] for e in refused]
