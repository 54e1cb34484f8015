"""The daemon's accuracy intake (#18): POST /v1/accuracy on the real HTTP endpoint, its
table read back as an observation source, its config. No MLflow here: the registry facts
come from the state DB as the monitor's poll leaves them (tests/monitor/test_intake_e2e.py
runs it inside a real `watcher run` against a real MLflow server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from watcher.cli.main import main
from watcher.config import REDACTED, Config, load_config
from watcher.errors import ConfigError
from watcher.monitor import intake_store, table
from watcher.monitor.intake import AccuracyIntake
from watcher.monitor.intake_store import IntakeObservations, Stored, insert
from watcher.monitor.policy import PolicyConfig
from watcher.monitor.reports import BadReport, Report, check_report
from watcher.monitor.table import ModelRow
from watcher.runtime.http import HttpEndpoint
from watcher.runtime.state import StateStore, open_state
from watcher.testing import FakeClock

TOKEN = "s3cret-token-0123456789abcdef"
MODEL = "iris"
NOW = datetime.now(UTC).replace(microsecond=0)


@dataclass
class Intake:
    url: str
    state: StateStore
    hints: list[str] = field(default_factory=list)

    def post(self, body: Any, token: str | None = TOKEN, **kw: Any) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(self.url, content=data, headers=headers, timeout=30, **kw)

    def rows(self) -> list[tuple[Any, ...]]:
        return self.state.conn.execute(
            "SELECT id, model, version, metric, value, samples FROM intake_observations"
        ).fetchall()


def seed_registry(state: StateStore, model: str = MODEL, production: str | None = "2") -> None:
    """What the monitor's registry diff stores after a poll: versions 1 and 2."""
    with state.transaction() as tx:
        row = ModelRow(production, {"1": "Archived", "2": "Production"})
        table.save(tx, model, row, NOW, None)


@pytest.fixture
def intake(tmp_path: Path) -> Iterator[Intake]:
    state = open_state(tmp_path / "state")
    seed_registry(state)
    seed_registry(state, "no-prod", None)
    hints: list[str] = []
    route = AccuracyIntake(TOKEN, [MODEL, "no-prod"], tmp_path / "state", hints.append)
    endpoint = HttpEndpoint("127.0.0.1:0", [], routes=[route])
    endpoint.start()
    host, port = endpoint.address
    try:
        yield Intake(f"http://{host}:{port}/v1/accuracy", state, hints)
    finally:
        endpoint.stop()
        route.close()
        state.close()


GOOD = {"model": MODEL, "version": "2", "accuracy": 0.8, "samples": 200}


def test_a_report_is_stored_before_the_202_and_hints_the_monitor(intake: Intake) -> None:
    at = (NOW - timedelta(minutes=1)).isoformat()
    resp = intake.post({**GOOD, "at": at})
    assert 202 == resp.status_code, resp.text
    doc = resp.json()
    assert (MODEL, "2", "accuracy", 0.8, 200, at) == (
        doc["model"],
        doc["version"],
        doc["metric"],
        doc["value"],
        doc["samples"],
        doc["at"],
    )
    # Committed: another connection (the poll's) sees it.
    assert [(doc["id"], MODEL, "2", "accuracy", 0.8, 200)] == intake.rows()
    assert [MODEL] == intake.hints


def test_version_defaults_to_production_and_the_generic_form(intake: Intake) -> None:
    resp = intake.post({"model": MODEL, "metric": "rmse", "value": 41.5, "samples": 10})
    assert 202 == resp.status_code, resp.text
    assert ("2", "rmse", 41.5) == (resp.json()["version"], resp.json()["metric"], 41.5)


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789abcdef", TOKEN[:-1]])
def test_missing_or_wrong_token_is_401(intake: Intake, token: str | None) -> None:
    resp = intake.post(GOOD, token=token)
    assert 401 == resp.status_code
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in resp.text
    assert [] == intake.rows()


def test_another_scheme_with_the_right_token_is_401(intake: Intake) -> None:
    headers = {"Authorization": f"Basic {TOKEN}"}
    resp = httpx.post(intake.url, json=GOOD, headers=headers, timeout=30)
    assert 401 == resp.status_code


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "accuracy": 1.5}, "accuracy"),
        ({**GOOD, "accuracy": "high"}, "accuracy"),
        ({**GOOD, "accuracy": True}, "accuracy"),
        ({**GOOD, "samples": 0}, "samples"),
        ({**GOOD, "samples": 10**13}, "samples"),
        ({**GOOD, "samples": 2.5}, "samples"),
        ({**GOOD, "version": "0"}, "version"),
        ({**GOOD, "version": "v2"}, "version"),
        ({**GOOD, "version": "9" * 40}, "version"),
        ({**GOOD, "version": 2}, "version"),
        ({**GOOD, "model": ""}, "model"),
        ({**GOOD, "model": 7}, "model"),
        ({k: v for k, v in GOOD.items() if k != "model"}, "model"),
        ({k: v for k, v in GOOD.items() if k != "samples"}, "samples"),
        ({k: v for k, v in GOOD.items() if k != "accuracy"}, "accuracy"),
        ({**GOOD, "at": "yesterday"}, "at"),
        ({**GOOD, "at": "2026-01-31T12:00:00"}, "at"),  # no timezone
        ({**GOOD, "at": (NOW + timedelta(hours=1)).isoformat()}, "at"),
        ({**GOOD, "at": "1970-01-01T00:00:00Z"}, "at"),
        ({**GOOD, "colour": "blue"}, "colour"),
        ({**GOOD, "metric": "rmse", "value": 3.0}, "accuracy"),
        ({"model": MODEL, "metric": "loss", "value": 1.0, "samples": 5}, "metric"),
        ({"model": MODEL, "metric": "rmse", "value": -1.0, "samples": 5}, "value"),
        ({"model": MODEL, "metric": "rmse", "samples": 5}, "value"),
        (b"not json", "body"),
        (b"[1, 2]", "body"),
        (b"[" * 10_000, "body"),
    ],
)
def test_each_bad_field_is_a_400_naming_it(intake: Intake, body: Any, field: str) -> None:
    resp = intake.post(body)
    assert 400 == resp.status_code, resp.text
    doc = resp.json()
    assert field == doc["field"]
    assert doc["error"].startswith(f"{field}: ")
    assert [] == intake.rows()
    assert [] == intake.hints


def test_an_oversized_body_is_a_413(intake: Intake) -> None:
    resp = intake.post({**GOOD, "pad": "x" * 20_000})
    assert 413 == resp.status_code
    assert [] == intake.rows()


@pytest.mark.parametrize(
    ("body", "status", "field", "text"),
    [
        ({**GOOD, "model": "other"}, 404, "model", "'other' is not watched"),
        ({**GOOD, "version": "7"}, 422, "version", "model 'iris' has no version 7"),
        (
            {"model": "no-prod", "accuracy": 0.5, "samples": 5},
            422,
            "version",
            "has no Production version",
        ),
    ],
)
def test_unwatched_models_and_unknown_versions_are_refused(
    intake: Intake, body: dict[str, Any], status: int, field: str, text: str
) -> None:
    resp = intake.post(body)
    assert (status, field) == (resp.status_code, resp.json()["field"]), resp.text
    assert text in resp.json()["error"]
    assert [] == intake.rows()


def test_the_cli_and_the_intake_say_the_same(
    intake: Intake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One implementation: check_report's detail, named as `--accuracy` by the CLI and as
    "accuracy" by the intake."""
    with pytest.raises(BadReport) as caught:
        check_report(Report(MODEL, "2", "accuracy", 1.5, 200, None))
    detail = caught.value.fault.detail
    assert f"accuracy: {detail}" == intake.post({**GOOD, "accuracy": 1.5}).json()["error"]
    cfg = tmp_path / "w.toml"
    cfg.write_text(f"[state]\ndir = '{tmp_path / 'cli-state'}'\n", encoding="utf-8")
    argv = ["--config", str(cfg), "report-accuracy", "--model", MODEL, "--accuracy", "1.5"]
    assert 2 == main([*argv, "--samples", "200", "--via-daemon"])
    assert f"error: --accuracy: {detail}" == capsys.readouterr().err.strip().splitlines()[-1]


def test_the_source_reads_the_newest_window_of_the_watched_metric(tmp_path: Path) -> None:
    state = open_state(tmp_path)
    with state.transaction() as tx:
        for i in range(8):
            at = NOW - timedelta(minutes=10 - i)
            insert(tx, Stored(0, MODEL, "2", "accuracy", 0.5 + i / 100, 10 + i, at, NOW))
        insert(tx, Stored(0, MODEL, "2", "rmse", 3.0, 5, NOW, NOW))
        insert(tx, Stored(0, MODEL, "1", "accuracy", 0.1, 5, NOW, NOW))

    def policy(model: str) -> PolicyConfig:
        return PolicyConfig(metric="accuracy", threshold=0.9, window=3)

    source = IntakeObservations(tmp_path, policy, FakeClock(NOW))
    got = source.observations([(MODEL, "2")])[(MODEL, "2")]
    assert [15, 16, 17] == [o.samples for o in got]  # the newest 3, oldest first
    assert {"accuracy"} == {o.metric for o in got}
    source.close()
    state.close()


def test_pruning_keeps_the_table_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_store, "KEEP_PER_VERSION", 3)
    state = open_state(tmp_path)
    old = NOW - intake_store.RETENTION - timedelta(days=1)
    with state.transaction() as tx:
        for i in range(6):
            insert(
                tx, Stored(0, MODEL, "2", "accuracy", 0.9, 10 + i, NOW - timedelta(minutes=i), old)
            )
        insert(tx, Stored(0, MODEL, "1", "accuracy", 0.9, 1, old, old))  # old, not Production
        insert(tx, Stored(0, MODEL, "3", "accuracy", 0.9, 2, NOW, NOW))  # recent, kept
    assert 4 == intake_store.prune(state, [(MODEL, "2")], NOW)
    left = state.conn.execute(
        "SELECT version, samples FROM intake_observations ORDER BY version, samples"
    ).fetchall()
    assert [("2", 10), ("2", 11), ("2", 12), ("3", 2)] == left
    state.close()


def test_a_full_table_refuses_new_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_store, "MAX_ROWS", 2)
    state = open_state(tmp_path)
    with state.transaction() as tx:
        ids = [insert(tx, Stored(0, MODEL, "2", "accuracy", 0.9, 1, NOW, NOW)) for _ in range(3)]
    assert [1, 2, None] == ids
    state.close()


class TestConfig:
    def test_token_without_listen_is_refused_naming_both(self) -> None:
        with pytest.raises(ConfigError) as caught:
            load_config(env={"WATCHER_HTTP__TOKEN": TOKEN})
        text = str(caught.value)
        assert "http.token" in text and "http.listen" in text and TOKEN not in text

    def test_a_short_token_is_refused_without_echoing_it(self) -> None:
        env = {"WATCHER_HTTP__TOKEN": "short", "WATCHER_HTTP__LISTEN": "127.0.0.1:9464"}
        with pytest.raises(ConfigError) as caught:
            load_config(env=env)
        assert "http.token" in str(caught.value) and "short" not in str(caught.value)

    def test_the_token_is_masked_and_may_come_from_a_file(self, tmp_path: Path) -> None:
        (tmp_path / "token").write_text(TOKEN + "\n", encoding="utf-8")
        env = {
            "WATCHER_HTTP__TOKEN_FILE": str(tmp_path / "token"),
            "WATCHER_HTTP__LISTEN": "127.0.0.1:9464",
        }
        cfg = load_config(env=env)
        assert cfg.http.token is not None and TOKEN == cfg.http.token.get_secret_value()
        assert REDACTED == cfg.redacted()["http"]["token"]
        assert TOKEN in cfg.secret_values()

    def test_the_token_may_not_be_written_in_the_file(self, tmp_path: Path) -> None:
        path = tmp_path / "w.toml"
        path.write_text(f"[http]\nlisten = '127.0.0.1:9464'\ntoken = '{TOKEN}'\n")
        with pytest.raises(ConfigError, match=r"http\.token: secrets may not be written"):
            load_config(path, env={})

    def test_the_route_exists_only_with_a_token(self, tmp_path: Path) -> None:
        from watcher.app import build_routes

        class _Monitor:
            receiver = None

            def hint(self, model: str) -> None: ...

        plain = Config.model_validate({"http": {"listen": "127.0.0.1:9464"}})
        assert [] == build_routes(plain, _Monitor())  # type: ignore[arg-type]
        with_token = Config.model_validate(
            {"http": {"listen": "127.0.0.1:9464", "token": TOKEN}, "state": {"dir": str(tmp_path)}}
        )
        assert ["/v1/accuracy"] == [r.path for r in build_routes(with_token, _Monitor())]  # type: ignore[arg-type]


def test_report_metric_via_the_daemon_prints_what_was_stored(
    intake: Intake, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "token").write_text(TOKEN, encoding="utf-8")
    listen = intake.url.removeprefix("http://").removesuffix("/v1/accuracy")
    cfg = tmp_path / "w.toml"
    cfg.write_text(
        f"[state]\ndir = '{tmp_path / 'cli-state'}'\n"
        f"[http]\nlisten = '{listen}'\ntoken_file = '{tmp_path / 'token'}'\n",
        encoding="utf-8",
    )
    argv = ["--config", str(cfg), "report-metric", "--via-daemon", "--model", MODEL]
    assert 0 == main([*argv, "--metric", "rmse", "--value", "41.5", "--samples", "9", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert (MODEL, "2", "rmse", 41.5, 9) == (
        doc["model"],
        doc["version"],
        doc["metric"],
        doc["rmse"],
        doc["samples"],
    )
    assert [(doc["id"], MODEL, "2", "rmse", 41.5, 9)] == intake.rows()
    # Refused by the daemon (the registry has no v7): exit 2, named as the option.
    assert 2 == main(
        [*argv, "--version", "7", "--metric", "rmse", "--value", "1", "--samples", "9"]
    )
    err = capsys.readouterr().err
    assert f"error: --version: model '{MODEL}' has no version 7 (the daemon at {intake.url})" in err
    assert TOKEN not in err


def test_an_integer_too_big_for_a_float_is_a_400_not_a_500() -> None:
    """A 401-digit JSON integer overflowed math.isfinite inside the check (a 500)."""
    from watcher.monitor.policy import observation_problem

    problem = observation_problem(10**400, 5)
    assert problem is not None and "finite number" in problem and "401-digit" in problem


def test_a_metric_the_model_is_not_watched_on_is_a_422(tmp_path: Path) -> None:
    """It would be stored and never read: the client must not believe it counts."""
    from watcher.runtime.routes import Request

    state = open_state(tmp_path / "state")
    seed_registry(state)
    route = AccuracyIntake(
        TOKEN, [MODEL], tmp_path / "state", lambda _m: None, watched_metric=lambda _m: "accuracy"
    )
    try:
        body = {"model": MODEL, "version": "2", "metric": "rmse", "value": 0.3, "samples": 5}
        headers = {"authorization": f"Bearer {TOKEN}"}
        reply = route.handle(Request("POST", route.path, headers, json.dumps(body).encode(), "t"))
        assert 422 == reply.status and "metric" == reply.body["field"]
        assert "watched on accuracy, not rmse" in reply.body["error"]
    finally:
        route.close()
        state.close()
