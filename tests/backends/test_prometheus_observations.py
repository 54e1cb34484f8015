"""PrometheusObservations against a real `prometheus` scraping a test exporter, and against
loopback servers that answer what no Prometheus would (errors, silence, a huge body)."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from structlog.testing import capture_logs

from tests.services.prometheus_server import PrometheusServer, expose
from watcher.backends.prometheus_observations import (
    MAX_BODY,
    PrometheusObservations,
    observation,
    parse_vector,
    server_name,
)
from watcher.errors import ObservationsUnavailable
from watcher.monitor.promql import parse_template

VALUE = 'model_accuracy{model="{model}",version="{version}"}'
SAMPLES = 'model_predictions_total{model="{model}",version="{version}"}'


_OPEN: list[PrometheusObservations] = []


@pytest.fixture(autouse=True)
def _close_sources() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def source(
    url: str, value: str = VALUE, samples: str = SAMPLES, **kw: object
) -> PrometheusObservations:
    made = PrometheusObservations(
        url,
        parse_template(value),
        parse_template(samples),
        lambda model: "accuracy",
        **kw,  # type: ignore[arg-type]
    )
    _OPEN.append(made)
    return made


def name(prefix: str = "m") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def publish(server: PrometheusServer, *series: tuple[str, str, float, float]) -> None:
    """Set (model, version, accuracy, count) series, then wait until all are scraped."""
    for model, version, acc, n in series:
        server.exporter.set("model_accuracy", acc, model=model, version=version)
        server.exporter.set("model_predictions_total", n, model=model, version=version)
    for model, version, acc, n in series:
        labels = {"model": model, "version": version}
        expose(server, "model_accuracy", acc, labels)
        expose(server, "model_predictions_total", n, labels)


class TestRealPrometheus:
    def test_one_observation_per_version_at_the_query_time(
        self, prometheus_server: PrometheusServer
    ) -> None:
        model = name()
        publish(prometheus_server, (model, "3", 0.97, 500))
        src = source(prometheus_server.url)
        before = datetime.now(UTC)
        got = src.observations([(model, "3"), (model, "4")])
        (obs,) = got[(model, "3")]
        assert (0.97, 500, "accuracy") == (obs.value, obs.samples, obs.metric)
        assert before - timedelta(seconds=1) <= obs.at <= datetime.now(UTC)
        assert [] == got[(model, "4")]  # no series: no observation, not an error
        assert 3 == src.queries  # v4's value query found nothing: no samples query

    def test_hostile_model_names_select_exactly_their_own_series(
        self, prometheus_server: PrometheusServer
    ) -> None:
        """A name that would close the string and the selector, a backslash, a newline:
        escaped, each selects its own series and nothing else (a decoy answers 0.1)."""
        tag = uuid.uuid4().hex[:6]
        hostile = [
            f'{tag}"}} or vector(1) #',
            f"{tag}\\",
            f'{tag}\\"',
            f"{tag}\nx",
            f"{tag}.*",
        ]
        publish(
            prometheus_server,
            (f"{tag}decoy", "1", 0.1, 900),
            *((model, "1", 0.5 + i / 100, 100 + i) for i, model in enumerate(hostile)),
        )
        got = source(prometheus_server.url).observations([(m, "1") for m in hostile])
        for i, model in enumerate(hostile):
            (obs,) = got[(model, "1")]
            assert (0.5 + i / 100, 100 + i) == (obs.value, obs.samples), model

    def test_regex_matcher_takes_the_name_literally(
        self, prometheus_server: PrometheusServer
    ) -> None:
        """``=~"{model}"``: ``fraud.v2`` is escaped for RE2, so ``fraudXv2`` is not matched."""
        tag = uuid.uuid4().hex[:6]
        publish(prometheus_server, (f"{tag}fraudXv2", "1", 0.2, 300))
        regex = 'model_accuracy{model=~"{model}",version="{version}"}'
        count = 'model_predictions_total{model=~"{model}",version="{version}"}'
        src = source(prometheus_server.url, regex, count)
        assert [] == src.observations([(f"{tag}fraud.v2", "1")])[(f"{tag}fraud.v2", "1")]
        publish(prometheus_server, (f"{tag}fraud.v2", "1", 0.93, 400))
        (obs,) = src.observations([(f"{tag}fraud.v2", "1")])[(f"{tag}fraud.v2", "1")]
        assert (0.93, 400) == (obs.value, obs.samples)

    def test_no_traffic_is_no_observation(self, prometheus_server: PrometheusServer) -> None:
        """0 samples, or a NaN ratio (0/0): no evidence either way, nothing logged."""
        zero, nan = name("zero"), name("nan")
        publish(prometheus_server, (zero, "1", 0.4, 0), (nan, "1", math.nan, 50))
        with capture_logs() as logs:
            got = source(prometheus_server.url).observations([(zero, "1"), (nan, "1")])
        assert {(zero, "1"): [], (nan, "1"): []} == got
        assert [] == logs

    def test_unusable_numbers_are_skipped_and_logged_once(
        self, prometheus_server: PrometheusServer
    ) -> None:
        """An accuracy of 97 (a percentage), -5 samples, several series for one version:
        that version gets no observation, each cause logged once across polls."""
        pct, neg, many = name("pct"), name("neg"), name("many")
        publish(
            prometheus_server,
            (pct, "1", 97.0, 500),
            (neg, "1", 0.9, -5),
            (many, "1", 0.9, 500),
            (many, "2", 0.8, 500),
        )
        no_version = 'model_accuracy{model="{model}"}'
        src = source(prometheus_server.url, no_version, SAMPLES)
        plain = source(prometheus_server.url)
        with capture_logs() as logs:
            for _ in range(2):
                got = plain.observations([(pct, "1"), (neg, "1")])
                assert {(pct, "1"): [], (neg, "1"): []} == got
                assert [] == src.observations([(many, "1")])[(many, "1")]
        reasons = sorted(str(e["reason"]) for e in logs if e["event"] == "observation_skipped")
        assert [
            "samples: must be a count >= 0, got -5.0",
            "value: accuracy must be a finite number in [0, 1], got 97.0",
            "value_query: 2 series answered, expected one (add labels to select one)",
        ] == reasons

    def test_a_query_prometheus_refuses_is_an_outage_naming_the_key(
        self, prometheus_server: PrometheusServer
    ) -> None:
        src = source(prometheus_server.url, 'model_accuracy{model="{model}"} +')
        with pytest.raises(ObservationsUnavailable, match=r"^prometheus: value_query: HTTP 400"):
            src.observations([(name(), "1")])

    def test_a_scalar_is_refused(self, prometheus_server: PrometheusServer) -> None:
        src = source(prometheus_server.url, 'scalar(model_accuracy{model="{model}"})')
        with pytest.raises(ObservationsUnavailable, match="expected an instant vector, got scalar"):
            src.observations([(name(), "1")])


def test_closed_port_is_an_outage_without_credentials() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    src = source(f"http://user:pw-secret@127.0.0.1:{port}/prom", token="tok-secret")
    with pytest.raises(ObservationsUnavailable) as info:
        src.observations([("m", "1")])
    text = str(info.value)
    assert f"prometheus: cannot reach http://127.0.0.1:{port}: ConnectError" == text
    assert "secret" not in text and info.value.source == "prometheus"


def test_silence_is_an_outage_after_the_timeout() -> None:
    """A server that accepts and never answers: given up after ``timeout``."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ObservationsUnavailable, match=r"did not answer within 0\.5s"):
            source(url, timeout=0.5).observations([("m", "1")])
        assert time.monotonic() - started < 30


class _Canned:
    """A loopback HTTP server answering every query with one canned reply, recording the
    requests' Authorization headers and query parameters."""

    def __init__(self, status: int, body: bytes) -> None:
        self.auth: list[str | None] = []
        self.paths: list[str] = []
        canned = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canned.auth.append(self.headers.get("Authorization"))
                canned.paths.append(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def canned() -> Iterator[list[_Canned]]:
    made: list[_Canned] = []
    yield made
    for c in made:
        c.close()


def vector(*samples: list[object]) -> bytes:
    result = [{"metric": {}, "value": s} for s in samples]
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    ).encode()


def test_bearer_token_and_time_are_sent(canned: list[_Canned]) -> None:
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    server = _Canned(200, vector([now.timestamp(), "1"]))  # the value and the count
    canned.append(server)
    src = source(server.url, token="tok-123", now=lambda: now)
    (obs,) = src.observations([("m", "1")])[("m", "1")]
    assert (1.0, 1, now) == (obs.value, obs.samples, obs.at)
    assert ["Bearer tok-123", "Bearer tok-123"] == server.auth
    assert all(f"time={now.timestamp():.3f}" in p for p in server.paths)
    assert all(p.startswith("/api/v1/query?") for p in server.paths)


def test_a_time_ahead_of_the_clock_is_skipped(canned: list[_Canned]) -> None:
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    ahead = (now + timedelta(hours=1)).timestamp()
    server = _Canned(200, vector([ahead, "1"]))
    canned.append(server)
    with capture_logs() as logs:
        got = source(server.url, now=lambda: now).observations([("m", "1")])
    assert [] == got[("m", "1")]
    (skipped,) = [e for e in logs if e["event"] == "observation_skipped"]
    assert "at: " in skipped["reason"] and "in the future" in skipped["reason"]


def test_an_answer_larger_than_the_bound_is_an_outage(canned: list[_Canned]) -> None:
    server = _Canned(200, b" " * (MAX_BODY + 10))
    canned.append(server)
    with pytest.raises(ObservationsUnavailable, match="answer larger than 1024 KiB"):
        source(server.url).observations([("m", "1")])


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (503, b"<html>down</html>", "HTTP 503, not the query API's JSON"),
        (200, b"[1, 2]", "HTTP 200, not the query API's JSON"),
        (200, b"{" * 100_000, "not the query API's JSON"),
        (
            422,
            b'{"status":"error","errorType":"execution","error":"too many samples"}',
            "HTTP 422, execution: too many samples",
        ),
        (200, b'{"status":"success","data":{"resultType":"matrix","result":[]}}', "got matrix"),
        (200, b'{"status":"success","data":{"resultType":"vector","result":{}}}', "not a list"),
        (200, vector([1, 0.5]), 'not [time, "value"]'),
        (200, vector(["x", "0.5"]), 'not [time, "value"]'),
        (200, vector([1, "0.5", 2]), 'not [time, "value"]'),
    ],
)
def test_answers_that_are_not_a_vector_are_outages(status: int, body: bytes, message: str) -> None:
    with pytest.raises(ObservationsUnavailable, match=message.replace("[", r"\[")):
        parse_vector("value_query", status, body)


@pytest.mark.parametrize(
    ("value", "count", "why"),
    [
        (math.inf, 10, "value: accuracy must be a finite number in [0, 1], got inf"),
        (-0.1, 10, "value: accuracy must be a finite number in [0, 1], got -0.1"),
        (0.9, math.inf, "samples: must be a count >= 0, got inf"),
        (0.9, math.nan, "samples: must be a count >= 0, got nan"),
        (0.9, 1e13, "samples: must be at most"),
    ],
)
def test_unusable_numbers(value: float, count: float, why: str) -> None:
    now = datetime.now(UTC)
    obs, problem = observation("accuracy", value, count, now.timestamp(), now)
    assert obs is None and problem is not None and problem.startswith(why)


def test_fractional_counts_are_rounded_down() -> None:
    """increase() extrapolates: 99.7 predictions count as 99, 0.4 as none."""
    now = datetime.now(UTC)
    obs, _ = observation("rmse", 41.0, 99.7, now.timestamp(), now)
    assert obs is not None and (41.0, 99, "rmse") == (obs.value, obs.samples, obs.metric)
    assert (None, None) == observation("rmse", 41.0, 0.4, now.timestamp(), now)


def test_server_name_hides_credentials_and_path() -> None:
    assert "https://prom:9443" == server_name("https://u:p@prom:9443/sub/path?x=1")
    assert "http://127.0.0.1" == server_name("http://127.0.0.1")


@pytest.mark.parametrize(
    ("stamp", "value"),
    [(1.7e9, "0_5"), (1.7e9, "infinity"), (1.7e9, " 0.5 "), (0, "0.5"), (True, "0.5")],
)
def test_only_the_query_apis_own_numbers_are_read(stamp: object, value: str) -> None:
    """Python's float() takes "0_5" as 5.0 and "infinity"; a time of 0 or true would be an
    observation from 1970: none of them is what Prometheus sends."""
    body = {"status": "success", "data": {"resultType": "vector", "result": []}}
    body["data"]["result"] = [{"metric": {}, "value": [stamp, value]}]  # type: ignore[index]
    with pytest.raises(ObservationsUnavailable, match="a sample is not"):
        parse_vector("value_query", 200, json.dumps(body).encode())
    good = {"status": "success", "data": {"resultType": "vector", "result": []}}
    good["data"]["result"] = [{"metric": {}, "value": [1.7e9, "+Inf"]}]  # type: ignore[index]
    assert [(1.7e9, float("inf"))] == parse_vector("v", 200, json.dumps(good).encode())
