"""`watcher status` and `watcher history`: JSON validated against docs/*.schema.json."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from watcher.cli.main import main
from watcher.runtime.state import META_HEARTBEAT, META_LAST_DELIVERED, StateStore, iso, open_state

REPO = Path(__file__).resolve().parents[2]
H1, H2 = "1" * 64, "2" * 64
MODEL = "iris-classifier"


def _schema(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((REPO / "docs" / name).read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _scenario(state: StateStore, now: datetime) -> None:
    """Two datasets, a promotion, poor live accuracy, an alert and a rollback."""
    t = [now - timedelta(minutes=60 - 5 * i) for i in range(12)]
    with state.transaction() as tx:
        tx.execute(
            "INSERT INTO snapshots VALUES (?, ?, ?, 3, 300), (?, ?, ?, 4, 400)",
            (H1, iso(t[0]), iso(t[0]), H2, iso(t[3]), iso(t[3])),
        )
        tx.execute(
            "INSERT INTO outbox (run_id, data_hash, reason, conf, status, attempts,"
            " next_attempt_at, created_at, delivered_at, run_state, finished_at)"
            " VALUES (?, ?, 'data', '{}', 'delivered', 1, ?, ?, ?, 'success', ?),"
            " (?, ?, 'data', '{}', 'pending', 2, ?, ?, NULL, NULL, NULL)",
            (
                *(f"data__{H1}", H1, iso(t[0]), iso(t[0]), iso(t[0]), iso(t[1])),
                *(f"data__{H2}", H2, iso(t[4]), iso(t[3])),
            ),
        )
        tx.execute(
            "INSERT INTO registry_models (model, production_version, versions, observed_at)"
            " VALUES (?, '1', '{\"1\": \"Production\"}', ?)",
            (MODEL, iso(t[9])),
        )
        tx.execute(
            "INSERT INTO rollback_journal (model, from_version, to_version, step, reason, actor,"
            " started_at, updated_at) VALUES (?, '2', '1', 'done', 'live accuracy 0.60 < 0.90',"
            " 'policy', ?, ?)",
            (MODEL, iso(t[8]), iso(t[9])),
        )
        state.set_meta(META_LAST_DELIVERED, H1, conn=tx)
        state.set_meta(
            "monitor.policy", json.dumps({MODEL: {"version": "1", "status": "ok"}}), conn=tx
        )
        ev: list[tuple[str, str, dict[str, Any], str | None, str | None]] = [
            ("trigger.delivered", "triggered data__1…", {}, None, H1),
            ("model.promoted", "v1 promoted", {"training_accuracy": 0.95}, "1", H1),
            ("model.promoted", "v2 promoted", {"training_accuracy": 0.97}, "2", H2),
            ("monitor.accuracy_firing", "v2 live accuracy firing", {"accuracy": 0.6}, "2", None),
            ("rollback.done", "rolled back v2 → v1", {"from": "2", "to": "1"}, "1", None),
            ("monitor.accuracy_resolved", "v1 ok", {"accuracy": 0.93, "samples": 150}, "1", None),
        ]
        for i, (kind, msg, payload, version, data_hash) in enumerate(ev):
            model = None if kind.startswith("trigger") else MODEL
            state.record(
                kind,
                msg,
                model=model,
                version=version,
                data_hash=data_hash,
                payload=payload,
                at=t[i + 2],
                conn=tx,
            )


def _heartbeat(state: StateStore, at: datetime, *, pid: int, data_ok: bool) -> None:
    checks = {"core": {"ok": True, "outbox_depth": 1}, "data": {"ok": data_ok}}
    state.set_meta(META_HEARTBEAT, json.dumps({"pid": pid, "at": iso(at), "checks": checks}))


def _status(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert 0 == main(["status", "--json"])
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    _schema("status.schema.json").validate(doc)
    return doc


def test_status_after_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Hashes, last run, per-model versions/accuracies/alert/rollback, outbox and health."""
    now = datetime.now(UTC)
    state = open_state(tmp_path / ".watcher")
    try:
        _scenario(state, now)
        _heartbeat(state, now, pid=os.getpid(), data_ok=False)
    finally:
        state.close()
    doc = _status(capsys)
    assert H2 == doc["dataset"]["current_hash"]
    assert H1 == doc["dataset"]["last_delivered_hash"]
    assert 4 == doc["dataset"]["file_count"]
    assert f"data__{H2}" == doc["last_trigger"]["run_id"]
    assert "pending" == doc["last_trigger"]["status"]
    assert {"depth": 1, "by_status": {"delivered": 1, "pending": 1}} == doc["outbox"]
    [model] = doc["models"]
    assert "1" == model["production_version"]
    assert 0.95 == model["training_accuracy"]  # v1's, not v2's
    assert 0.93 == model["live_accuracy"]
    assert 150 == model["live_samples"]
    assert "ok" == model["alert_state"]
    assert ("2", "1", "done") == tuple(
        model["last_rollback"][k] for k in ("from_version", "to_version", "step")
    )
    assert doc["daemon"]["running"] is True
    assert doc["daemon"]["healthy"] is False
    assert os.getpid() == doc["daemon"]["pid"]

    assert 0 == main(["status"])
    text = capsys.readouterr().out
    for expected in (MODEL, "v1", "95.0%", "93.0%", "v2→v1 done", "1 pending", "unhealthy", "data"):
        assert expected in text, expected


def test_stale_or_stopped_heartbeat_means_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A heartbeat a minute old, or the stop marker, reads as not running."""
    state = open_state(tmp_path / ".watcher")
    try:
        _heartbeat(state, datetime.now(UTC) - timedelta(minutes=1), pid=os.getpid(), data_ok=True)
        stale = _status(capsys)["daemon"]
        state.set_meta(
            "heartbeat", json.dumps({"pid": None, "at": iso(datetime.now(UTC)), "stopped": True})
        )
        stopped = _status(capsys)["daemon"]
    finally:
        state.close()
    assert (False, None) == (stale["running"], stale["healthy"])
    assert stale["heartbeat_age_seconds"] >= 60
    assert stopped["running"] is False
    assert 0 == main(["status"])
    assert "not running" in capsys.readouterr().out


def test_status_without_state_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a fresh dir status answers (valid, all unknown) and does not create the state dir."""
    doc = _status(capsys)
    assert doc["models"] == [] and doc["last_trigger"] is None
    assert not (tmp_path / ".watcher").exists()


def test_history_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every `history --json` line matches the schema; --model filters, order is oldest first."""
    state = open_state(tmp_path / ".watcher")
    try:
        _scenario(state, datetime.now(UTC))
    finally:
        state.close()
    validator = _schema("history.schema.json")
    assert 0 == main(["history", "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for line in lines:
        validator.validate(line)
    assert 6 == len(lines)
    assert [e["id"] for e in lines] == sorted(e["id"] for e in lines)
    assert 0 == main(["history", "--json", "--model", MODEL])
    mine = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert 5 == len(mine) and {MODEL} == {e["model"] for e in mine}
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**lines[0], "data_hash": "short"})


def test_status_views_show_values_as_they_are(tmp_path: Path) -> None:
    """A stored error holding what looks like rich markup ("[ssl: ...]", "[/]") is shown
    as is on a terminal (rich) and piped (plain text); rich used to eat it as markup."""
    from io import StringIO

    from rich.console import Console

    from watcher.cli.commands.status import plain, render
    from watcher.cli.status import collect

    doc = collect(None, data_dir=tmp_path, state_dir=tmp_path, now=datetime.now(UTC))
    error = "[ssl: certificate_verify_failed] [/] closed"
    doc["daemon"].update(
        running=True, healthy=False, pid=1, checks={"core": {"ok": False, "error": error}}
    )
    screen = StringIO()
    render(doc, Console(file=screen, width=200))
    assert error in screen.getvalue()
    assert error in plain(doc)


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["history"]])
def test_a_directory_in_place_of_the_db_is_an_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    """Not "never started": the damaged state is named (exit 1, as for a corrupt DB)."""
    (tmp_path / "state" / "state.db").mkdir(parents=True)
    monkeypatch.setenv("WATCHER_STATE__DIR", str(tmp_path / "state"))
    assert 1 == main(command)
    assert "state.db: state database is corrupt (it is a directory)" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["history"], ["history", "--json"]])
def test_history_without_state_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """Read-only like status: no state dir or DB is created just to say there is none."""
    assert 0 == main(command)
    out = capsys.readouterr()
    assert "" == out.out and "no history yet" in out.err
    assert not (tmp_path / ".watcher").exists()


@pytest.mark.parametrize("where", ["file", "under-file"])
@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["history"]])
def test_a_state_dir_that_is_a_file_is_bad_config(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    where: str,
) -> None:
    """Exit 2 naming state.dir (it was `error: NotADirectoryError: ...`, exit 1)."""
    (tmp_path / "f").write_text("x")
    state_dir = tmp_path / "f" if where == "file" else tmp_path / "f" / "state"
    monkeypatch.setenv("WATCHER_STATE__DIR", str(state_dir))
    assert 2 == main(command)
    err = capsys.readouterr().err
    assert err.startswith(f"error: state.dir: {state_dir}") and "is not a directory" in err, err


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["history"]])
def test_a_dangling_db_symlink_is_an_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    """Not "never started" (status) nor "cannot write" (history): named, exit 1."""
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.db").symlink_to(tmp_path / "gone" / "state.db")
    monkeypatch.setenv("WATCHER_STATE__DIR", str(tmp_path / "state"))
    assert 1 == main(command)
    err = capsys.readouterr().err
    assert "state.db: state database is corrupt (it is a symlink to " in err, err
    assert not (tmp_path / "gone").exists()
