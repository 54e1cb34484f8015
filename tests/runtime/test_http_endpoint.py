"""/healthz and /metrics: in a real `watcher run`, and the endpoint component in-process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.runtime.conftest import NotifySocket, free_port, promtool, start_watcher, stop_watcher
from watcher.runtime.component import Health
from watcher.runtime.http import HttpEndpoint
from watcher.runtime.metrics import Metrics
from watcher.runtime.routes import Reply, Request


class _Toggle:
    """A component whose health a test flips (for failures a real one cannot produce)."""

    name = "toggle"

    def __init__(self) -> None:
        self.ok = True

    def start(self) -> None: ...

    def tick(self) -> float:
        return 1.0

    def health(self) -> Health:
        if self.ok is None:
            raise RuntimeError("boom")
        return Health(self.name, self.ok, {} if self.ok else {"reason": "flipped"})

    def stop(self) -> None: ...


@pytest.fixture
def endpoint() -> Iterator[tuple[HttpEndpoint, _Toggle, Metrics]]:
    toggle = _Toggle()
    metrics = Metrics()
    ep = HttpEndpoint("127.0.0.1:0", [toggle], metrics=metrics)
    ep.start()
    try:
        yield ep, toggle, metrics
    finally:
        ep.stop()


def test_every_metric_family_passes_promtool(
    endpoint: tuple[HttpEndpoint, _Toggle, Metrics],
) -> None:
    """With every metric populated, /metrics is valid exposition text for promtool."""
    ep, _, m = endpoint
    m.record_trigger("delivered", at=1_700_000_000.0)
    m.record_trigger("duplicate")
    m.record_trigger("failed")
    m.record_hash(0.42, bytes_read=1024, total_bytes=4096, files=3)
    m.set_production("iris-classifier", "2")
    m.live_accuracy.labels(model="iris-classifier").set(0.83)
    m.set_alert_state("iris-classifier", "firing")
    m.rollbacks.labels(model="iris-classifier", result="done").inc()
    m.poll_errors.labels(backend="mlflow").inc()
    m.last_poll_success.labels(backend="airflow").set(1_700_000_000.0)
    m.outbox_depth.set(2)
    m.notifier_failures.labels(channel="slack").inc()
    ep.tick()
    host, port = ep.address
    resp = httpx.get(f"http://{host}:{port}/metrics", timeout=5)
    assert 200 == resp.status_code
    for family in (
        "watcher_triggers_total",
        "watcher_dataset_hash_duration_seconds_bucket",
        "watcher_dataset_bytes",
        "watcher_last_trigger_timestamp_seconds",
        "watcher_production_version",
        "watcher_live_accuracy",
        "watcher_alert_state",
        "watcher_rollbacks_total",
        "watcher_poll_errors_total",
        "watcher_outbox_depth",
        "watcher_notifier_failures_total",
    ):
        assert f"\n{family}" in resp.text, family
    assert 'watcher_alert_state{model="iris-classifier",state="firing"} 1.0' in resp.text
    checked = promtool(resp.content)
    assert 0 == checked.returncode, checked.stdout + checked.stderr


def test_healthz_states_in_process(endpoint: tuple[HttpEndpoint, _Toggle, Metrics]) -> None:
    """503 before the first tick, 200 healthy, 503 with the failing check, raising = failing."""
    ep, toggle, metrics = endpoint
    host, port = ep.address
    url = f"http://{host}:{port}"
    assert 503 == httpx.get(f"{url}/healthz", timeout=5).status_code  # not ticked yet
    ep.tick()
    assert 200 == httpx.get(f"{url}/healthz", timeout=5).status_code
    toggle.ok = False
    ep.tick()
    resp = httpx.get(f"{url}/healthz", timeout=5)
    assert 503 == resp.status_code
    assert {"toggle": {"ok": False, "ready": True, "reason": "flipped"}} == resp.json()["failing"]
    assert b"watcher_up 0.0" in metrics.render()
    toggle.ok = None  # type: ignore[assignment]
    ep.tick()
    failing = httpx.get(f"{url}/healthz", timeout=5).json()["failing"]
    assert "health check raised RuntimeError" == failing["toggle"]["error"]
    assert 404 == httpx.get(f"{url}/nope", timeout=5).status_code
    assert 200 == httpx.head(f"{url}/metrics", timeout=5).status_code


def test_stalled_main_loop_is_unhealthy(
    endpoint: tuple[HttpEndpoint, _Toggle, Metrics], monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the main loop stops refreshing the snapshot, /healthz reports it as main_loop."""
    ep, _, _ = endpoint
    ep.tick()
    monkeypatch.setattr("watcher.runtime.http.STALE_AFTER", -1.0)
    ok, doc = ep.healthz()
    assert not ok
    assert "main loop stalled" == doc["failing"]["main_loop"]["reason"]


def test_public_bind_needs_opt_in(tmp_path: Path) -> None:
    """http.listen on a non-loopback address is refused unless http.allow_public is set."""
    from watcher.cli.main import main

    cfg = tmp_path / "w.toml"
    cfg.write_text("[http]\nlisten = '0.0.0.0:9464'\n", encoding="utf-8")
    assert 2 == main(["--config", str(cfg), "check-config"])
    cfg.write_text("[http]\nlisten = '0.0.0.0:9464'\nallow_public = true\n", encoding="utf-8")
    assert 0 == main(["--config", str(cfg), "check-config"])


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def test_gauges_right_from_the_first_scrape_after_a_restart(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    """`watcher run` trains v1 from data, stops; restarted, its very first /metrics after
    READY=1 has Production, the last trigger time and the alert state (#13)."""
    import shutil
    import signal

    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "data", tmp_path / "data")
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {"WATCHER_HTTP__LISTEN": f"127.0.0.1:{port}", "WATCHER_MONITOR__POLL_INTERVAL": "2s"}
    production = 'watcher_production_version{model="iris-classifier"}'
    proc = start_watcher(tmp_path, notify_socket, extra_env=env)
    try:
        notify_socket.wait_for("READY=1", timeout=120)
        deadline = time.monotonic() + 300
        while _metric(httpx.get(url, timeout=5).text, production) != 1.0:
            assert time.monotonic() < deadline, "v1 never became Production"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert 0 == proc.wait(timeout=60)
    finally:
        out = stop_watcher(proc)
    proc = start_watcher(tmp_path, notify_socket, extra_env=env)
    try:
        notify_socket.wait_for("READY=1", timeout=120)
        text = httpx.get(url, timeout=5).text
        assert 1.0 == _metric(text, production), text
        last_trigger = _metric(text, "watcher_last_trigger_timestamp_seconds")
        assert last_trigger is not None and last_trigger > 1_700_000_000, text
        alert = 'watcher_alert_state{model="iris-classifier",state="inconclusive"}'
        assert 1.0 == _metric(text, alert), text
        polled = 'watcher_last_successful_poll_timestamp_seconds{backend="mlflow"}'
        assert (_metric(text, polled) or 0) > 1_700_000_000, text
        assert 0 == promtool(text.encode()).returncode
    finally:
        out = stop_watcher(proc)
    assert '"event": "ready"' in out


class _Echo:
    """A write route (runtime.routes.Route) that echoes what it was given."""

    path = "/v1/echo"
    methods: tuple[str, ...] = ("POST",)
    max_body = 16

    def handle(self, request: Request) -> Reply:
        if request.body == b"boom":
            raise RuntimeError("handler bug")
        return Reply(202, {"body": request.body.decode(), "ctype": request.headers["x-kind"]})


def test_write_routes_limits_and_errors() -> None:
    """A route gets the body and lower-case headers; an oversized body is 413 unread, a
    wrong method 405, an unknown path 404, a handler that raises 500 (the server lives)."""
    ep = HttpEndpoint("127.0.0.1:0", [], metrics=Metrics(), routes=[_Echo()])
    ep.start()
    try:
        host, port = ep.address
        url = f"http://{host}:{port}/v1/echo"
        with httpx.Client(timeout=10) as c:
            ok = c.post(url, content=b"hello", headers={"X-Kind": "t"})
            assert (202, {"body": "hello", "ctype": "t"}) == (ok.status_code, ok.json())
            assert 413 == c.post(url, content=b"x" * 17).status_code
            assert 405 == c.get(url).status_code
            assert 404 == c.post(url + "x", content=b"").status_code
            assert 500 == c.post(url, content=b"boom", headers={"X-Kind": "t"}).status_code
            assert 200 == c.get(f"http://{host}:{port}/metrics").status_code
    finally:
        ep.stop()
