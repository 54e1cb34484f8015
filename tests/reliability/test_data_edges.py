"""Issue 15: data-dir edge cases a deploy tool or a careless export produces.

Duplicated CSV header columns, file names that are not UTF-8, a self-symlink with
``watch.follow_symlinks``, and a data dir that is a symlink (watched through inotify).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.lineage import compute_manifest
from pipeline.run import main as pipeline_main
from tests.data.conftest import DataSide, drive, make_config, runs
from tests.reliability.conftest import (
    daemon_env,
    run_hashes,
    start_daemon,
    stop_daemon,
    wait_for,
)
from watcher.cli.main import main as cli_main
from watcher.data.fswatch import FsWatch
from watcher.runtime.http import HttpEndpoint
from watcher.runtime.state import open_state


def _preprocess_fails(data: Path, tmp_path: Path) -> str:
    """Run the pipeline and return its one-line error: exit 2, MLflow never touched."""
    db = tmp_path / "mlflow.db"
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = pipeline_main(
            ["--data-dir", str(data), "--tracking-uri", f"sqlite:///{db}", "--promote", "always"]
        )
    assert 2 == code, err.getvalue()
    assert not db.exists(), "the pipeline reached MLflow"
    lines = err.getvalue().strip().splitlines()
    assert 1 == len(lines) and lines[0].startswith("error: "), lines
    assert "Traceback" not in err.getvalue()
    return lines[0]


# -- Duplicated header columns ------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "sepal_length,sepal_length,target",  # pandas would rename the second: sepal_length.1
        "sepal_length, sepal_length,target",  # equal after stripping (was AttributeError)
        "a,sepal_length,b, sepal_length ,target",
    ],
)
def test_duplicate_header_columns_are_refused_naming_file_and_column(
    header: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    width = header.count(",") + 1
    rows = "".join(",".join(["1"] * (width - 1) + [str(i % 2)]) + "\n" for i in range(8))
    (data / "iris.csv").write_text(header + "\n" + rows)
    message = _preprocess_fails(data, tmp_path)
    assert "iris.csv" in message and "sepal_length" in message and "duplicate" in message


# -- A self-symlink with follow_symlinks -----------------------------------------------


@pytest.mark.parametrize(("name", "shown"), [(b"self", "self"), (b"s\xe9lf", "s\\xe9lf")])
def test_self_symlink_is_skipped_and_named_once(
    name: bytes,
    shown: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`ln -s self data/self` made every scan fail ("Too many levels of symbolic links"), so
    nothing trained; now the link is skipped, named once in the log and the history, and
    the data around it triggers (twice: the second scan proves the name is not repeated).
    A link name that is not UTF-8 is named printably (the history is SQLite text)."""
    cfg = make_config(tmp_path, **{"watch.follow_symlinks": "true"})
    data = cfg.watch.data_dir
    data.mkdir()
    (data / os.fsdecode(name)).symlink_to(os.fsdecode(name))
    (data / "a.csv").write_text("x,target\n1,0\n")
    state = open_state(cfg.state.dir)
    dw = DataSide(cfg, state, progress=False, follow_interval=0.2)
    try:
        dw.start()
        drive(dw, lambda: len(runs(tmp_path)) == 1, timeout=30)
        (data / "b.csv").write_text("x,target\n2,1\n")
        drive(dw, lambda: len(runs(tmp_path)) == 2, timeout=30)
        drive(dw, lambda: not dw.outbox.following(), timeout=30)
        assert compute_manifest(data, follow_symlinks=True).dataset_hash == runs(tmp_path)[-1]
        assert 2 == dw.status.last_files and dw.status.last_error is None
        skipped = state.events(kinds=["data.skipped"])
        assert 1 == len(skipped) and f"/{shown}: symlink loop" in skipped[0].message, skipped
        logged = caplog.text + capsys.readouterr().out  # wherever structlog writes
        assert 1 == logged.count("file_skipped") and "symlink loop" in logged
    finally:
        dw.stop()
        state.close()


# -- File names that are not UTF-8 -------------------------------------------------------

LATIN1_NAME = b"caf\xe9.csv"  # what a Latin-1 tool writes for "café.csv"
SHOWN = "caf\\xe9.csv"  # how every error names it


def _latin1_data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    rows = "".join(f"{i},{i % 2}\n" for i in range(8))
    (data / "ok.csv").write_text("x,target\n" + rows)
    (data / os.fsdecode(LATIN1_NAME)).write_text("x,target\n" + rows)
    return data


def _get(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_non_utf8_name_is_refused_by_the_cli_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI hashed it, the daemon and the pipeline could not: refused the same way."""
    data = _latin1_data(tmp_path)
    monkeypatch.setenv("WATCHER_STATE__DIR", str(tmp_path / "state"))
    assert 2 == cli_main(["hash", str(data)])
    err = capsys.readouterr().err
    assert err.startswith("error: ") and 1 == len(err.strip().splitlines()), err
    assert SHOWN in err and "UTF-8" in err and "Traceback" not in err


def test_non_utf8_name_is_refused_by_the_pipeline_naming_it(tmp_path: Path) -> None:
    """It was "backend failure: UnicodeEncodeError", exit 1."""
    message = _preprocess_fails(_latin1_data(tmp_path), tmp_path)
    assert SHOWN in message and "UTF-8" in message


def test_non_utf8_name_holds_the_daemon_naming_it_in_healthz(tmp_path: Path) -> None:
    """Every pass used to fail with a traceback (SQLite cannot store the name) and
    /healthz said 200. Now: no trigger, the file named once in the history, /healthz 503
    (readiness) with the name; renaming the file triggers."""
    data = _latin1_data(tmp_path)
    cfg = make_config(tmp_path)
    state = open_state(cfg.state.dir)
    dw = DataSide(cfg, state, progress=False, follow_interval=0.2)
    http = HttpEndpoint("127.0.0.1:0", dw.components)
    try:
        dw.start()
        http.start()
        drive(dw, lambda: dw.status.last_error is not None, timeout=30)
        assert SHOWN in (dw.status.last_error or "")
        http.tick()
        host, port = http.address
        code, doc = _get(f"http://{host}:{port}/healthz")
        assert 503 == code, doc
        failing = doc["failing"]
        assert isinstance(failing, dict) and SHOWN in failing["data"]["error"], doc
        assert [] == runs(tmp_path)
        errors = state.events(kinds=["data.error"])
        assert 1 == len(errors) and SHOWN in errors[0].message, errors
        (data / os.fsdecode(LATIN1_NAME)).rename(data / "cafe.csv")
        drive(dw, lambda: len(runs(tmp_path)) == 1, timeout=30)
        drive(dw, lambda: not dw.outbox.following(), timeout=30)
        http.tick()
        assert 200 == _get(f"http://{host}:{port}/healthz")[0]
    finally:
        http.stop()
        dw.stop()
        state.close()


# -- A symlinked data dir ---------------------------------------------------------------


def _relink(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically, as deploy tools do (symlink + rename)."""
    tmp = link.with_name(link.name + ".new")
    tmp.symlink_to(target)
    tmp.replace(link)


def test_data_dir_link_at_startup_gets_inotify_events(tmp_path: Path) -> None:
    """`data → real/` from the start: inotify on the link path saw nothing at all."""
    (tmp_path / "real").mkdir()
    (tmp_path / "data").symlink_to("real")
    fs = FsWatch(tmp_path / "data", mode="events", quiet_period=0.1)
    try:
        assert fs.start() and "events" == fs.active_mode
        (tmp_path / "real" / "a.csv").write_text("x")
        wait_for(lambda: fs.batch_due() is not None, 30, "an inotify event under real/")
        batch = fs.take()
        assert batch is not None and str(tmp_path / "real" / "a.csv") in batch.sample
        assert fs.problem() is None
    finally:
        fs.stop()


def test_symlinked_data_dir_is_watched_at_its_target(tmp_path: Path) -> None:
    """A real `watcher run` (inotify, reconcile 1 h): changes under the link's target
    trigger within seconds, after the data dir is swapped for a link at run time and
    after the link is retargeted. Each write waits until the rebuilt watch has done its
    own scan, so the run that follows can only come from an inotify event on the target."""
    log = tmp_path / "watcher.log"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x,target\n1,0\n")
    env = daemon_env(tmp_path, WATCHER_WATCH__MODE="events", WATCHER_WATCH__RECONCILE_INTERVAL="1h")
    proc = start_daemon(tmp_path, env)

    def runs_n() -> int:
        return len(run_hashes(tmp_path))

    def scanned_after_rebuild(n: int) -> bool:
        """The n-th rebuild happened and a scan finished after it (its own, which took
        every change noted so far)."""
        events = [line for line in log.read_text().splitlines() if '"event": "' in line]
        rebuilt = [i for i, line in enumerate(events) if '"event": "watch_rebuilt"' in line]
        if len(rebuilt) < n:
            return False
        return any('"event": "data_scanned"' in line for line in events[rebuilt[n - 1] :])

    try:
        wait_for(lambda: runs_n() == 1, 120, "the startup run")
        # The dir becomes a link to itself, moved (same inode: only the path says so).
        (tmp_path / "data").rename(tmp_path / "release1")
        (tmp_path / "data").symlink_to("release1")
        wait_for(lambda: scanned_after_rebuild(1), 60, "the watch rebuilt on release1")
        (tmp_path / "release1" / "b.csv").write_text("x,target\n2,1\n")
        wait_for(lambda: runs_n() == 2, 60, "a run for b.csv (inotify)")
        # The link retargeted to a new release.
        (tmp_path / "release2").mkdir()
        (tmp_path / "release2" / "c.csv").write_text("x,target\n3,0\n")
        _relink(tmp_path / "data", "release2")
        wait_for(lambda: scanned_after_rebuild(2), 60, "the watch rebuilt on release2")
        wait_for(lambda: runs_n() == 3, 60, "a run for release2 (the rebuild's scan)")
        (tmp_path / "release2" / "d.csv").write_text("x,target\n4,1\n")
        wait_for(lambda: runs_n() == 4, 60, "a run for d.csv (inotify)")
        assert compute_manifest(tmp_path / "data").dataset_hash == run_hashes(tmp_path)[-1]
        rebuilds = [line for line in log.read_text().splitlines() if '"watch_rebuilt"' in line]
        assert "release1" in rebuilds[0] and "release2" in rebuilds[1], rebuilds
    finally:
        assert 0 == stop_daemon(proc), log.read_text()[-3000:]
