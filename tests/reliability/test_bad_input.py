"""Bad input corpus: generated configs, hostile data files, bad CLI arguments.

Every case ends in a clear error naming what is wrong (exit 2 on the CLI), never a
traceback, and never in anything half-trained or registered. Cases already proved by
the feature suites are referenced, not repeated: names `sha256sum` would escape
(tests/data/test_hashing.py), report-accuracy out-of-range accuracy, samples 0,
unknown model and version 99 (tests/monitor/test_acceptance.py), rollback exit codes
(tests/rollback/test_cli_rollback.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.run import main as pipeline_main
from tests.data.conftest import DataSide, drive, make_config, runs
from tests.reliability.conftest import WATCHER
from watcher.cli.main import main as cli_main
from watcher.config import Config, load_config
from watcher.errors import ConfigError
from watcher.runtime.state import open_state

# -- Configs, property-based --------------------------------------------------------------

SECTIONS = {name: info.annotation for name, info in Config.model_fields.items()}
KNOWN_KEYS = {
    section: sorted(info.alias or key for key, info in model.model_fields.items())  # type: ignore[union-attr]
    for section, model in SECTIONS.items()
}
_bad_urls = st.sampled_from(
    ["ftp://x", "http://", "not a url", "127.0.0.1:8080", "https//x", "", "http://[::1"]
)
_scalars = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=12),
    _bad_urls,
    st.sampled_from(["-5s", "0", "1d", "5m", "-1", "30", "1e9", "auto", "[1,", "*", "a,b"]),
)
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3))


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    """A TOML tree close to a real config: known sections and keys with wrong-ish values,
    plus unknown keys, nested sections and ``*_file`` secrets pointing nowhere."""
    tree: dict[str, Any] = {}
    for section in draw(st.lists(st.sampled_from(sorted(SECTIONS)), max_size=4, unique=True)):
        body: dict[str, Any] = {}
        keys = KNOWN_KEYS[section]
        for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
            if key.endswith("_file"):
                body[key] = draw(st.sampled_from(["/nonexistent/secret", "rel/missing", ""]))
            elif key in ("airflow", "alertmanager", "webhook", "slack", "email"):
                body[key] = {
                    draw(st.sampled_from(["url", "password_file", "bogus", "timeout"])): draw(
                        st.one_of(_scalars, st.just("/nonexistent/secret"))
                    )
                }
            else:
                body[key] = draw(_values)
        if draw(st.booleans()):
            body[draw(st.sampled_from(["colour", "intervall", "Data_Dir"]))] = draw(_scalars)
        tree[section] = body
    if draw(st.booleans()):
        tree[draw(st.sampled_from(["watchh", "extra", "x"]))] = {"k": draw(_scalars)}
    return tree


def _floats(tree: object) -> list[float]:
    if isinstance(tree, dict):
        return [f for v in tree.values() for f in _floats(v)]
    if isinstance(tree, list):
        return [f for v in tree for f in _floats(v)]
    return [tree] if isinstance(tree, float) else []


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = "".join(
            c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in value
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    raise TypeError(value)


def to_toml(tree: dict[str, Any]) -> str:
    return "".join(
        f"[{section}]\n" + "".join(f'"{k}" = {_toml_value(v)}\n' for k, v in body.items())
        for section, body in tree.items()
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(configs())
def test_generated_configs_never_escape_as_another_exception(tree: dict[str, Any]) -> None:
    """load_config on a generated file either validates or raises ConfigError (never any
    other exception), and `watcher check-config` exits 0 or 2 with one-line errors and no
    traceback; an invalid config is exactly the exit-2 case."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "watcher.toml"
        path.write_text(to_toml(tree), encoding="utf-8")
        try:
            cfg = load_config(path, env={})
            valid = True
            # Accepted numbers are usable: TOML's nan/inf would pass a `>= 0` check.
            assert all(math.isfinite(v) for v in _floats(cfg.model_dump()))
        except ConfigError as exc:
            valid = False
            assert exc.errors and all(e.strip() for e in exc.errors)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli_main(["--config", str(path), "check-config"])
    assert (0 if valid else 2) == code, err.getvalue()
    assert "Traceback" not in err.getvalue()
    if not valid:
        assert all(line.startswith("error: ") for line in err.getvalue().splitlines())


@given(
    key=st.sampled_from(
        [
            "WATCHER_WATCH__QUIET_PERIOD",
            "WATCHER_MONITOR__POLL_INTERVAL",
            "WATCHER_TRIGGER__AIRFLOW__URL",
            "WATCHER_ALERTS__WEBHOOK__URL",
            "WATCHER_WATCH__IGNORE",
            "WATCHER_HTTP__LISTEN",
            "WATCHER_MONITOR__MIN_ACCURACY",
            "WATCHER_ALERTS__EMAIL__PASSWORD_FILE",
            "WATCHER_NOSUCH__KEY",
        ]
    ),
    value=st.text(max_size=20),
)
@settings(max_examples=150, deadline=None, database=None)
def test_env_overrides_fail_only_with_config_error(key: str, value: str) -> None:
    """Any string in a WATCHER_* variable: valid, or a ConfigError naming the variable."""
    try:
        load_config(None, env={key: value})
    except ConfigError as exc:
        assert any(key in e or "unknown key" in e for e in exc.errors), exc.errors


# -- Hostile data files --------------------------------------------------------------------


def _preprocess_fails(data: Path, tmp_path: Path) -> str:
    """Run the pipeline (what a trigger runs) and return its one-line error; assert that it
    failed in preprocess: exit 2 and MLflow never touched (nothing trained or registered)."""
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
    return lines[0]


def test_binary_junk_fails_preprocess_with_the_file_named(tmp_path: Path) -> None:
    """Random bytes saved as a CSV: the pipeline stops before training, naming the file."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "junk.csv").write_bytes(os.urandom(64 * 1024))
    assert "junk.csv" in _preprocess_fails(data, tmp_path)


def test_very_long_single_line_is_hashed_and_refused(tmp_path: Path) -> None:
    """One 50 MB line without a newline (a scaled-down stand-in for the 2 GB case: the
    hash streams in 1 MiB reads, so memory does not depend on the size): the daemon hashes
    and triggers it like any data, and the run fails preprocess ("no data rows")."""
    data = tmp_path / "data"
    data.mkdir()
    with (data / "line.csv").open("wb") as fh:
        block = b"a," * (1 << 19)
        for _ in range(50):
            fh.write(block)
    cfg = make_config(tmp_path)
    state = open_state(cfg.state.dir)
    dw = DataSide(cfg, state, progress=False, follow_interval=0.2)
    try:
        dw.start()
        drive(dw, lambda: len(runs(tmp_path)) == 1, timeout=60)
        drive(dw, lambda: not dw.outbox.following(), timeout=20)
    finally:
        dw.stop()
        state.close()
    assert "line.csv" in _preprocess_fails(data, tmp_path)


def test_csv_with_10000_columns_fails_preprocess(tmp_path: Path) -> None:
    """10,000 feature columns and no target column: refused before training."""
    data = tmp_path / "data"
    data.mkdir()
    header = ",".join(f"c{i}" for i in range(10_000))
    rows = "\n".join(",".join(str((i * j) % 7) for j in range(10_000)) for i in range(5))
    (data / "wide.csv").write_text(header + "\n" + rows + "\n")
    message = _preprocess_fails(data, tmp_path)
    assert "wide.csv" in message and "target" in message


@pytest.fixture
def shared_tmp() -> Any:
    """A 0755 dir outside pytest's 0700 tmp root, so an unprivileged child can walk it."""
    path = Path(tempfile.mkdtemp(prefix="rw-perm-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.root
def test_unreadable_file_holds_the_trigger_with_the_path_as_nobody(shared_tmp: Path) -> None:
    """A data file the daemon may not read. Tests run as root, which ignores chmod, and the
    venv's interpreter is not reachable for other users, so a forked child drops to
    `nobody` and runs the data watcher: no trigger, and the reason names the file."""
    data = shared_tmp / "data"
    data.mkdir(mode=0o755)
    (data / "ok.csv").write_text("a,target\n1,0\n")
    locked = data / "locked.csv"
    locked.write_text("a,target\n2,1\n")
    locked.chmod(0o000)
    (shared_tmp / "state").mkdir()
    (shared_tmp / "state").chmod(0o777)  # the child (nobody) writes its state here
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        os.close(read_end)
        code = 1
        out = ""
        try:
            os.setgid(65534)
            os.setuid(65534)
            cfg = make_config(shared_tmp)
            state = open_state(cfg.state.dir)
            dw = DataSide(cfg, state, progress=False)
            dw.start()
            deadline = time.monotonic() + 60
            while dw.status.last_error is None and time.monotonic() < deadline:
                dw.tick()  # until the scan has named the file (a positive marker)
                time.sleep(0.02)
            dw.stop()
            doc = {
                "error": dw.status.last_error,
                "queued": len(state.events(kinds=["trigger.queued"])),
                "history": [e.message for e in state.events(kinds=["data.error"])],
            }
            state.close()
            out, code = json.dumps(doc), 0
        except BaseException:
            out = traceback.format_exc()
        finally:
            os.write(write_end, out.encode())
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        out = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status), out
    doc = json.loads(out)
    assert 0 == doc["queued"]
    assert not (shared_tmp / "runs.txt").exists()
    assert "locked.csv" in doc["error"] and "ermission" in doc["error"], doc
    assert doc["history"] == [doc["error"]]


def test_file_vanishing_mid_hash_and_symlink_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Files deleted and re-created while the hash reads the tree: scans wait for the tree
    to settle, and the run is for the settled tree; a symlink loop (follow_symlinks on) is
    detected and skipped with a logged reason instead of hanging the scan."""
    cfg = make_config(tmp_path, **{"watch.follow_symlinks": "true"})
    data = cfg.watch.data_dir
    data.mkdir()
    for i in range(300):
        (data / f"f{i:03}.csv").write_bytes(os.urandom(2048))
    state = open_state(cfg.state.dir)
    dw = DataSide(cfg, state, progress=False, follow_interval=0.2)
    stop = threading.Event()

    def churn() -> None:  # delete and re-create files while scans run
        i = 0
        while not stop.is_set():
            (data / f"f{i % 300:03}.csv").unlink(missing_ok=True)
            time.sleep(0.001)
            (data / f"f{i % 300:03}.csv").write_bytes(b"x" * 2048)
            i += 1

    thread = threading.Thread(target=churn, daemon=True)
    try:
        dw.start()
        thread.start()
        for _ in range(40):
            dw.tick()
            time.sleep(0.02)
        stop.set()
        thread.join()
        final = {p.name for p in data.iterdir()}
        assert 300 == len(final)
        from pipeline.lineage import compute_manifest

        settled = compute_manifest(data).dataset_hash
        # The last run is the settled tree: wait for that delivery itself (the scan of the
        # settled tree may come a debounce after an earlier run's outbox went idle).
        drive(dw, lambda: dw.outbox.last_delivered_hash() == settled, timeout=60)
        drive(dw, lambda: not dw.outbox.following() and not dw.outbox.pending(), timeout=30)
        assert settled == dw.outbox.last_delivered_hash(), "last run is the settled tree"
        # A symlink loop (follow_symlinks on): detected and skipped with a logged reason;
        # the scan terminates and covers the regular files only.
        (data / "loop").symlink_to(data, target_is_directory=True)
        (data / "extra.csv").write_text("a,target\n1,0\n")
        before = len(runs(tmp_path))
        drive(dw, lambda: len(runs(tmp_path)) == before + 1, timeout=20)
        drive(dw, lambda: not dw.outbox.following(), timeout=20)
        assert 301 == dw.status.last_files
        logged = caplog.text + capsys.readouterr().out  # wherever structlog writes
        assert "file_skipped" in logged and "symlink loop" in logged
    finally:
        stop.set()
        dw.stop()
        state.close()


# -- CLI arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["report-accuracy", "--model", "m", "--version", "0", "--accuracy", "0.5",
          "--samples", "10"], "version"),
        (["report-accuracy", "--model", "m", "--accuracy", "0.5", "--samples", "-3"],
         "samples"),
        (["report-accuracy", "--model", "m", "--accuracy", "nan", "--samples", "3"], "accuracy"),
        (["report-accuracy", "--model", "m", "--accuracy", "0.5", "--samples", str(10**19)],
         "--samples: must be at most"),
        (["report-accuracy", "--model", "m", "--accuracy", "0.5", "--samples", str(10**400)],
         "a 401-digit number"),
        (["report-accuracy", "--model", "m", "--accuracy", "0.5", "--samples", "3",
          "--at", "2099-01-01T00:00Z"], "in the future"),
        (["report-accuracy", "--model", "m", "--accuracy", "0.5", "--samples", "3",
          "--at", "4102444800"], "in the future"),
        (["rollback", "--model", "m", "--to", "0", "--yes"], "--to"),
        (["rollback", "--model", "no-such-model", "--yes"], "no-such-model"),
        (["history", "--limit", "0"], "limit"),
        (["history", "--limit", str(10**30)], "limit"),
        (["hash", "/nonexistent/dir"], "/nonexistent/dir"),
    ],
)  # fmt: skip
def test_bad_cli_arguments_exit_2_with_one_line(
    argv: list[str],
    needle: str,
    mlflow_sqlite_uri: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Version 0, negative samples, NaN accuracy, an unknown model, a zero limit, a missing
    dir: exit 2, one `error:` line naming the bad value, no traceback."""
    monkeypatch.setenv("WATCHER_STATE__DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WATCHER_MLFLOW__TRACKING_URI", mlflow_sqlite_uri)
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert 2 == code, err
    assert needle in err
    assert "Traceback" not in err
    assert all(line.startswith(("error: ", "Usage", "Try")) for line in err.splitlines() if line)


# -- Issue 15: validation gaps ------------------------------------------------------------

# Zero makes a hot loop (a poll, resend or retry every pass) or fails every request at once.
_ZERO_DURATIONS = [
    "monitor.poll_interval",
    "trigger.retry_initial",
    "trigger.retry_max",
    "trigger.run_timeout",
    "trigger.airflow.timeout",
    "alerts.repeat_interval",
    "alerts.alertmanager.resend_interval",
    "alerts.email.timeout",
    "mlflow.request_timeout",
    "rollback.window",
]
_TOO_BIG = [
    ("monitor.window", 10**6),
    ("monitor.min_samples", 10**19),
    ("pipeline.n_estimators", 10**9),
    ("pipeline.max_depth", 10**6),
    ("rollback.max_per_window", 10**6),
]


def _env_name(dotted: str) -> str:
    return "WATCHER_" + "__".join(p.upper() for p in dotted.split("."))


def _check_config(argv: list[str], capsys: pytest.CaptureFixture[str], needle: str) -> list[str]:
    """Run the CLI in-process: exit 2, every stderr line an `error:` line, one naming
    ``needle``, no traceback."""
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert 2 == code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), lines
    assert any(needle in line for line in lines), lines
    return lines


@pytest.mark.parametrize("key", _ZERO_DURATIONS)
@pytest.mark.parametrize("value", ["0", "0s", "0ms", "0.000000001", "5ms"])
def test_zero_durations_are_refused(
    key: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Intervals, timeouts and retry delays of 0, or so close to it that they loop as hot
    (accepted before: 99 delivery attempts and 1,024 log lines in 10 s): exit 2 naming the
    key and its source."""
    monkeypatch.setenv(_env_name(key), value)
    lines = _check_config(["check-config"], capsys, key)
    assert any("greater than 0" in line and _env_name(key) in line for line in lines), lines


@pytest.mark.parametrize(("key", "value"), _TOO_BIG)
def test_unbounded_counts_are_refused(
    key: str, value: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Counts from outside have upper bounds (a window of 10**6 observations, a forest of
    10**9 trees, 10**19 samples that SQLite cannot store)."""
    monkeypatch.setenv(_env_name(key), str(value))
    _check_config(["check-config"], capsys, key)


def test_retry_initial_above_retry_max_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHER_TRIGGER__RETRY_INITIAL", "1h")
    monkeypatch.setenv("WATCHER_TRIGGER__RETRY_MAX", "1m")
    _check_config(["check-config"], capsys, "trigger.retry_initial")


def _config_file(tmp_path: Path, how: str) -> Path:
    path = tmp_path / "watcher.toml"
    if how == "not UTF-8":
        path.write_bytes(b'[watch]\nignore = ["caf\xe9"]\n')
    elif how == "nested arrays":
        path.write_text("[watch]\nignore = " + "[" * 100_000 + "]" * 100_000 + "\n")
    elif how == "nested tables":
        path.write_text("x = " + "{a = " * 5_000 + "1" + "}" * 5_000 + "\n")
    elif how == "over 4 MiB":
        path.write_text("# padding\n" * (1 << 19))
    elif how == "a directory":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    ("how", "needle"),
    [
        ("not UTF-8", "not UTF-8 text (byte 0xe9 at offset 22)"),
        ("nested arrays", "nested too deeply"),
        ("nested tables", "nested too deeply"),
        ("over 4 MiB", "larger than 4096 KiB"),
    ],
)
def test_hostile_config_files_exit_2_with_the_cause(
    how: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config that is not UTF-8, nested 100,000 deep or huge: exit 2 naming the file and
    the cause (it was exit 1 "UnicodeDecodeError"/"RecursionError", or read in full)."""
    path = _config_file(tmp_path, how)
    (line,) = _check_config(["--config", str(path), "check-config"], capsys, needle)
    assert str(path) in line


def test_data_dir_that_is_a_file_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`watch.data_dir` naming a regular file: exit 2 naming the key (it was exit 1 with a
    generic message from deep in the watcher); a dir that does not exist yet is fine."""
    (tmp_path / "data").write_text("not a dir")
    monkeypatch.setenv("WATCHER_WATCH__DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("WATCHER_STATE__DIR", str(tmp_path / "state"))
    _check_config(["run"], capsys, "watch.data_dir")
    monkeypatch.setenv("WATCHER_WATCH__DATA_DIR", str(tmp_path / "later"))
    assert 0 == cli_main(["check-config"])


def test_deeply_nested_json_list_in_env_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WATCHER_WATCH__IGNORE", "[" * 100_000)
    _check_config(["check-config"], capsys, "WATCHER_WATCH__IGNORE")


@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "secret fifo", "secret /dev/zero"])
def test_special_files_are_refused_without_hanging(tmp_path: Path, target: str) -> None:
    """A FIFO nobody writes to (it hung forever) or /dev/zero (read without limit) as the
    config file or a `*_file` secret: exit 2 at once, naming the file — in a subprocess,
    so a regression times out instead of hanging the suite."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    special = str(fifo) if "fifo" in target else "/dev/zero"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    argv = [*WATCHER, "check-config"]
    if target.startswith("secret"):
        env["WATCHER_TRIGGER__AIRFLOW__PASSWORD_FILE"] = special
    else:
        argv[3:3] = ["--config", special]
    done = subprocess.run(
        argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert 2 == done.returncode, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert special in line and "not a regular file" in line, line
