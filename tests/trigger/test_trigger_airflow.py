"""AirflowTrigger against a real Airflow 3, plus MockTransport for failures it can't produce."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.services.airflow_server import STAND_IN_DAG_ID, AirflowServer, listening_sockets
from watcher.backends.airflow import AirflowTrigger, TriggerAuthError
from watcher.errors import BackendError, ConfigError, TriggerError
from watcher.ports import SubmitResult, TriggerUnavailable
from watcher.trigger.base import run_id_for

RUN_DEADLINE_S = 120.0
FAKE_PASSWORD = "pw-Secret-9"
TERMINAL = {"success", "failed"}


def _hash(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _conf(data_hash: str) -> dict[str, Any]:
    return {
        "data_hash": data_hash,
        "data_dir": "/data/iris",
        "file_count": 1,
        "bytes": 4551,
        "reason": "data",
    }


def _wait_terminal(trigger: AirflowTrigger, run_id: str) -> str | None:
    """Poll a run until it finishes; transient API failures are retried, as the daemon does."""
    deadline = time.monotonic() + RUN_DEADLINE_S
    state: str | None = None
    while time.monotonic() < deadline:
        try:
            state = trigger.run_state(run_id)
        except TriggerUnavailable:
            state = None
        if state in TERMINAL:
            break
        time.sleep(1.0)
    return state


def _deliver(trigger: AirflowTrigger, run_id: str, conf: dict[str, Any]) -> SubmitResult:
    """Submit until delivered, retrying TriggerUnavailable like the outbox (SQLite can lock)."""
    deadline = time.monotonic() + RUN_DEADLINE_S
    while True:
        try:
            return trigger.submit(run_id, conf)
        except TriggerUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(2.0)


def _runs(server: AirflowServer) -> list[dict[str, Any]]:
    with server.client() as client:
        resp = client.get(f"/api/v2/dags/{STAND_IN_DAG_ID}/dagRuns", params={"limit": 100})
        resp.raise_for_status()
        runs: list[dict[str, Any]] = resp.json()["dag_runs"]
        return runs


def _runs_with_id(server: AirflowServer, run_id: str) -> list[dict[str, Any]]:
    return [r for r in _runs(server) if r["dag_run_id"] == run_id]


def _wait_idle(server: AirflowServer) -> None:
    """Wait until no run is queued or running (their tasks need the api-server)."""
    deadline = time.monotonic() + RUN_DEADLINE_S
    while any(r["state"] not in TERMINAL for r in _runs(server)):
        assert time.monotonic() < deadline, "runs still active before the outage"
        time.sleep(1.0)


@pytest.fixture
def trigger(airflow_server: AirflowServer) -> Iterator[AirflowTrigger]:
    with AirflowTrigger(
        airflow_server.base_url,
        STAND_IN_DAG_ID,
        username=airflow_server.username,
        password=airflow_server.password,
        timeout=30.0,  # other test sessions share the 2 cores; SQLite waits on locks
    ) as trig:
        yield trig


# -- real Airflow -------------------------------------------------------------------


@pytest.mark.service
class TestAgainstRealAirflow:
    def test_components_bind_loopback_only(self, airflow_server: AirflowServer) -> None:
        """No Airflow component listens on anything but 127.0.0.1 / ::1."""
        socks = listening_sockets({p.pid for p in airflow_server.procs.values()})
        assert ("127.0.0.1", airflow_server.port) in socks
        assert {ip for ip, _ in socks} <= {"127.0.0.1", "::1"}, socks

    def test_submit_runs_to_success_with_conf(
        self, trigger: AirflowTrigger, airflow_server: AirflowServer
    ) -> None:
        """A submitted run gets our run id, reaches success, and its tasks saw the conf."""
        data_hash = _hash("submit-success")
        run_id = run_id_for(data_hash)
        conf = _conf(data_hash)

        result = _deliver(trigger, run_id, conf)

        assert result.run_id == run_id
        assert _wait_terminal(trigger, run_id) == "success"
        assert len(_runs_with_id(airflow_server, run_id)) == 1
        with airflow_server.client() as client:
            run = client.get(f"/api/v2/dags/{STAND_IN_DAG_ID}/dagRuns/{run_id}").json()
            xcom = client.get(
                f"/api/v2/dags/{STAND_IN_DAG_ID}/dagRuns/{run_id}/taskInstances/echo_conf"
                "/xcomEntries/return_value"
            ).json()
        assert conf == run["conf"]
        assert conf == xcom["value"]

    def test_same_run_id_is_already_delivered(
        self, trigger: AirflowTrigger, airflow_server: AirflowServer
    ) -> None:
        """Re-submitting a run id (while queued and after it finished) is 'already exists'."""
        run_id = run_id_for(_hash("duplicate"))
        conf = _conf(_hash("duplicate"))

        _deliver(trigger, run_id, conf)
        while_queued = _deliver(trigger, run_id, conf)
        state = _wait_terminal(trigger, run_id)
        after_finish = _deliver(trigger, run_id, conf)

        assert (while_queued.created, while_queued.status) == (False, "already_exists")
        assert (after_finish.created, after_finish.status) == (False, "already_exists")
        assert state == "success"
        assert len(_runs_with_id(airflow_server, run_id)) == 1

    def test_unknown_dag_is_a_clear_error(self, airflow_server: AirflowServer) -> None:
        """Triggering a DAG the server doesn't have names the DAG and the server."""
        with AirflowTrigger(
            airflow_server.base_url, "no_such_dag", username="admin", password="admin"
        ) as trig:
            with pytest.raises(TriggerError) as excinfo:
                trig.submit(run_id_for(_hash("unknown")), {})
            with pytest.raises(TriggerError):
                trig.is_paused()
        assert f"DAG 'no_such_dag' not found on {airflow_server.base_url}" == str(excinfo.value)
        assert not isinstance(excinfo.value, TriggerUnavailable)

    def test_wrong_password_is_an_auth_error(
        self, airflow_server: AirflowServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Bad credentials give one clear, non-retryable error that doesn't echo the password."""
        caplog.set_level(logging.DEBUG)
        with (
            AirflowTrigger(
                airflow_server.base_url,
                STAND_IN_DAG_ID,
                username="admin",
                password="wrong-Secret-123",
            ) as trig,
            pytest.raises(TriggerAuthError) as excinfo,
        ):
            trig.submit(run_id_for(_hash("wrong-password")), {})
        message = str(excinfo.value)
        assert "rejected the credentials for user 'admin'" in message
        assert "wrong-Secret-123" not in message + caplog.text + repr(trig)
        assert not isinstance(excinfo.value, TriggerUnavailable)

    def test_static_bearer_token(self, airflow_server: AirflowServer) -> None:
        """A configured token works; a bad one is an auth error without a token request."""
        with AirflowTrigger(
            airflow_server.base_url, STAND_IN_DAG_ID, token=airflow_server.token()
        ) as good:
            assert good.is_paused() is False
            assert good.run_state("data__never_submitted") is None
        with (
            AirflowTrigger(airflow_server.base_url, STAND_IN_DAG_ID, token="not-a-jwt") as bad,
            pytest.raises(TriggerAuthError, match="rejected the configured token"),
        ):
            bad.is_paused()

    def test_unverifiable_token_is_renewed(self, trigger: AirflowTrigger) -> None:
        """A token the server can't verify (403 "Invalid JWT token") is replaced transparently."""
        assert trigger.is_paused() is False
        # What a client holds after the api-server's JWT secret changed (no public setter).
        trigger._token = "eyJhbGciOiJIUzUxMiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl"

        assert trigger.is_paused() is False
        assert trigger._token is not None
        assert "c2lnbmF0dXJl" not in trigger._token

    def test_is_paused_follows_the_dag(
        self, trigger: AirflowTrigger, airflow_server: AirflowServer
    ) -> None:
        """is_paused reports a paused DAG so the daemon can warn (runs would stay queued)."""
        with airflow_server.client() as client:
            client.patch(
                f"/api/v2/dags/{STAND_IN_DAG_ID}", json={"is_paused": True}
            ).raise_for_status()
            try:
                paused = trigger.is_paused()
            finally:
                client.patch(
                    f"/api/v2/dags/{STAND_IN_DAG_ID}", json={"is_paused": False}
                ).raise_for_status()
        assert paused is True
        assert trigger.is_paused() is False

    def test_api_outage_is_retryable_then_delivers_once(
        self, trigger: AirflowTrigger, airflow_server: AirflowServer
    ) -> None:
        """With the api-server down submit is TriggerUnavailable; after restart it delivers once."""
        trigger.is_paused()  # holds a token from before the outage
        run_id = run_id_for(_hash("outage"))
        _wait_idle(airflow_server)
        airflow_server.stop_api_server()
        try:
            with pytest.raises(TriggerUnavailable, match="unreachable"):
                trigger.submit(run_id, _conf(_hash("outage")))
        finally:
            airflow_server.start_api_server()

        result = _deliver(trigger, run_id, _conf(_hash("outage")))

        assert result.run_id == run_id
        assert _wait_terminal(trigger, run_id) == "success"
        assert len(_runs_with_id(airflow_server, run_id)) == 1


# -- failures the real server can't produce on demand ----------------------------------


class FakeAirflow:
    """A scripted Airflow 3: issues numbered tokens, can expire them or fail requests.

    Like the real api-server: no token → 401, expired → 401 "Token Expired", a token it
    can't verify → 403 "Invalid JWT token".
    """

    def __init__(self) -> None:
        self.issued = 0
        self.valid: set[str] = set()
        self.expired: set[str] = set()
        self.requests: list[httpx.Request] = []
        self.fail_with: Callable[[httpx.Request], httpx.Response] | None = None

    def expire_all(self) -> None:
        self.expired |= self.valid
        self.valid.clear()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/auth/token":
            body = json.loads(request.content)
            if body != {"username": "admin", "password": FAKE_PASSWORD}:
                return httpx.Response(401, json={"detail": "Invalid credentials"})
            self.issued += 1
            token = f"token-Secret-{self.issued}"
            self.valid.add(token)
            return httpx.Response(201, json={"access_token": token})
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not token:
            return httpx.Response(401, json={"detail": "Not authenticated"})
        if token in self.expired:
            return httpx.Response(401, json={"detail": "Token Expired"})
        if token not in self.valid:
            return httpx.Response(403, json={"detail": "Invalid JWT token"})
        if self.fail_with is not None:
            return self.fail_with(request)
        if request.method == "POST":
            return httpx.Response(200, json={"dag_run_id": "x", "state": "queued"})
        return httpx.Response(200, json={"state": "running", "is_paused": False})

    def token_requests(self) -> int:
        return sum(r.url.path == "/auth/token" for r in self.requests)


@pytest.fixture
def fake() -> FakeAirflow:
    return FakeAirflow()


@pytest.fixture
def mocked(fake: FakeAirflow) -> Iterator[AirflowTrigger]:
    with AirflowTrigger(
        "http://airflow.test:8080/",
        username="admin",
        password=FAKE_PASSWORD,
        transport=httpx.MockTransport(fake),
    ) as trig:
        yield trig


class TestAuthentication:
    def test_401_then_reauthentication_succeeds(
        self, fake: FakeAirflow, mocked: AirflowTrigger
    ) -> None:
        """A token the server can't verify (403) is renewed once and the call retried."""
        mocked.is_paused()
        fake.valid.discard("token-Secret-1")  # e.g. the api-server's JWT secret changed

        result = mocked.submit("data__x", {"a": 1})

        assert result.created is True
        assert fake.token_requests() == 2
        assert fake.requests[-1].headers["authorization"] == "Bearer token-Secret-2"
        assert json.loads(fake.requests[-1].content) == {
            "dag_run_id": "data__x",
            "logical_date": None,
            "conf": {"a": 1},
        }

    def test_token_expiry_is_handled_on_each_expiry(
        self, fake: FakeAirflow, mocked: AirflowTrigger
    ) -> None:
        """Tokens that expire between calls are renewed each time, once per expiry."""
        states = [mocked.run_state("r")]
        for _ in range(3):
            fake.expire_all()
            states.append(mocked.run_state("r"))
            states.append(mocked.run_state("r"))

        assert states == ["running"] * 7
        assert fake.token_requests() == 4

    def test_persistent_401_gives_up_after_one_reauthentication(
        self, fake: FakeAirflow, mocked: AirflowTrigger
    ) -> None:
        """A server that rejects every fresh token produces an auth error, not a loop."""
        fake.fail_with = lambda _req: httpx.Response(401, json={"detail": "Not authenticated"})

        with pytest.raises(TriggerAuthError, match="still refuses a fresh token"):
            mocked.submit("data__x", {})

        assert fake.token_requests() == 2

    def test_permission_403_is_not_retried(self, fake: FakeAirflow, mocked: AirflowTrigger) -> None:
        """A 403 that is about permissions (not the token) is an auth error without re-auth."""
        fake.fail_with = lambda _req: httpx.Response(403, json={"detail": "Forbidden"})

        with pytest.raises(TriggerAuthError, match="forbids triggering run 'data__x'"):
            mocked.submit("data__x", {})

        assert fake.token_requests() == 1

    def test_static_token_is_sent_and_never_refreshed(self, fake: FakeAirflow) -> None:
        """A static bearer token is used as is; a 401 on it fails without calling /auth/token."""
        fake.valid.add("static")
        with AirflowTrigger(
            "http://airflow.test", token="static", transport=httpx.MockTransport(fake)
        ) as trig:
            assert trig.run_state("r") == "running"
            fake.expire_all()
            with pytest.raises(TriggerAuthError):
                trig.run_state("r")
        assert fake.token_requests() == 0
        assert fake.requests[0].headers["authorization"] == "Bearer static"

    def test_credentials_never_logged(
        self, fake: FakeAirflow, mocked: AirflowTrigger, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Neither the password nor a token appears in logs, errors or repr."""
        caplog.set_level(logging.DEBUG)
        mocked.submit("data__x", {})
        fake.fail_with = lambda _req: httpx.Response(422, json={"detail": "bad"})
        with pytest.raises(TriggerError) as excinfo:
            mocked.submit("data__y", {})
        text = caplog.text + str(excinfo.value) + repr(mocked)
        assert "Secret" not in text


class TestFailureClassification:
    @pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
    def test_server_errors_are_retryable(
        self, fake: FakeAirflow, mocked: AirflowTrigger, status: int
    ) -> None:
        """5xx and 429 raise TriggerUnavailable (a TriggerError) with the status in the message."""
        fake.fail_with = lambda _req: httpx.Response(status, text="upstream down")

        with pytest.raises(TriggerUnavailable) as excinfo:
            mocked.submit("data__x", {})

        assert isinstance(excinfo.value, TriggerError)
        assert isinstance(excinfo.value, BackendError)
        assert f"answered {status}" in str(excinfo.value)

    @pytest.mark.parametrize(
        "exc",
        [
            httpx.ConnectTimeout("connect timed out"),
            httpx.ReadTimeout("read timed out"),
            httpx.WriteTimeout("write timed out"),
            httpx.PoolTimeout("pool timed out"),
            httpx.ConnectError("connection refused"),
            httpx.RemoteProtocolError("server disconnected"),
        ],
        ids=lambda e: type(e).__name__,
    )
    def test_network_failures_are_retryable(self, exc: httpx.TransportError) -> None:
        """Timeouts and connection failures on any call become TriggerUnavailable."""

        def handler(request: httpx.Request) -> httpx.Response:
            raise exc

        with (
            AirflowTrigger(
                "http://airflow.test", token="x", transport=httpx.MockTransport(handler)
            ) as trig,
            pytest.raises(TriggerUnavailable) as excinfo,
        ):
            trig.submit("data__x", {})
        assert excinfo.value.__cause__ is exc

    def test_every_call_carries_explicit_timeouts(
        self, fake: FakeAirflow, mocked: AirflowTrigger
    ) -> None:
        """Token, submit, is_paused and run_state all go out with finite timeouts."""
        mocked.submit("data__x", {})
        mocked.is_paused()
        mocked.run_state("data__x")

        timeouts = [r.extensions["timeout"] for r in fake.requests]
        assert len(timeouts) == 4
        for timeout in timeouts:
            assert all(isinstance(v, float) and 0 < v <= 10 for v in timeout.values()), timeout

    def test_float_timeout_sets_every_phase(self, fake: FakeAirflow) -> None:
        """A float timeout from the config bounds read/write/pool and caps connect at 5 s."""
        with AirflowTrigger(
            "http://a.test", token="static", timeout=30, transport=httpx.MockTransport(fake)
        ) as trig:
            fake.valid.add("static")
            trig.run_state("r")
        assert fake.requests[0].extensions["timeout"] == {
            "connect": 5.0,
            "read": 30,
            "write": 30,
            "pool": 30,
        }

    def test_validation_error_carries_server_detail(
        self, fake: FakeAirflow, mocked: AirflowTrigger
    ) -> None:
        """A 422 is a permanent error that quotes FastAPI's field-level detail."""
        fake.fail_with = lambda _req: httpx.Response(
            422,
            json={"detail": [{"loc": ["body", "logical_date"], "msg": "Field required"}]},
        )

        with pytest.raises(TriggerError) as excinfo:
            mocked.submit("data__x", {})

        assert not isinstance(excinfo.value, TriggerUnavailable)
        assert "(HTTP 422): body.logical_date: Field required" in str(excinfo.value)

    def test_missing_run_is_none(self, fake: FakeAirflow, mocked: AirflowTrigger) -> None:
        """run_state of a run Airflow doesn't have is None, not an error."""
        fake.fail_with = lambda _req: httpx.Response(404, json={"detail": "not found"})

        assert mocked.run_state("data__nope") is None


class TestConstruction:
    @pytest.mark.parametrize(
        ("kwargs", "fragment"),
        [
            ({"base_url": "airflow:8080", "token": "t"}, "must start with http"),
            ({"base_url": "http://a", "dag_id": "", "token": "t"}, "dag_id must not be empty"),
            ({"base_url": "http://a", "username": "admin"}, "either a token or both"),
            ({"base_url": "http://a", "token": "t", "timeout": 0}, "timeout must be > 0"),
        ],
    )
    def test_bad_arguments_are_config_errors(self, kwargs: dict[str, Any], fragment: str) -> None:
        """Bad constructor arguments fail at once, naming the field."""
        with pytest.raises(ConfigError, match=fragment):
            AirflowTrigger(**kwargs)


class TestRunIdFor:
    def test_data_trigger_is_deterministic(self) -> None:
        """The same dataset hash always maps to the same data__<hash> run id."""
        h = _hash("x")
        assert f"data__{h}" == run_id_for(h) == run_id_for(h, "data")

    def test_retrain_ids_are_distinct(self) -> None:
        """Deliberate retrains of the same data get distinct ids, distinct from the data run."""
        h = _hash("x")
        ids = {run_id_for(h), run_id_for(h, "retrain", 1), run_id_for(h, "retrain", 2)}
        assert {f"data__{h}", f"retrain__{h}__1", f"retrain__{h}__2"} == ids

    @pytest.mark.parametrize(
        ("args", "fragment"),
        [
            (("abc",), "64 lowercase hex"),
            ((_hash("x").upper(),), "64 lowercase hex"),
            ((_hash("x"), "data", 1), "only for deliberate retrains"),
            ((_hash("x"), "retrain"), "needs attempt >= 1"),
            ((_hash("x"), "retrain", 0), "needs attempt >= 1"),
            ((_hash("x"), "re__train", 1), "lowercase word"),
            ((_hash("x"), "Retrain", 1), "lowercase word"),
        ],
    )
    def test_rejects_bad_input(self, args: tuple[Any, ...], fragment: str) -> None:
        """Malformed hashes, reasons or attempts are rejected with a message naming them."""
        with pytest.raises(ValueError, match=fragment):
            run_id_for(*args)
