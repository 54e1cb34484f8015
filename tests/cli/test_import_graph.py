"""The commands that do not talk to MLflow stay light: a guard on the import graph.

Each command runs in a fresh interpreter (a real `main(argv)` call, as the console
script makes it) and reports the modules it loaded. A timer would be flaky on a busy
box; a heavy import sneaking onto a light path is what makes these commands slow, and
that is deterministic. `benchmarks/cli_startup.py` measures the wall time.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

# Seconds of imports each (mlflow, sklearn, pandas, airflow), or not needed to read a
# config, a state DB or a small dir: rich (~25 ms) draws only status tables on a terminal,
# structlog (~40 ms with the asyncio it imports) loads at the first log line, the daemon's
# loop and the alert store only where the daemon runs.
HEAVY = (
    "mlflow",
    "sklearn",
    "pandas",
    "numpy",
    "airflow",
    "sqlalchemy",
    "rich",
    "structlog",
    "asyncio",
    "apscheduler",
    "watchdog",
    "httpx",
    "requests",
    "alerts.dispatcher",
    "alerts.store",
    "watcher.app",
    "watcher.backends",
    "watcher.runtime.daemon",
)
# `watcher --help` and `service-unit` read no config: no pydantic, no logging setup.
CONFIG_FREE_HEAVY = (*HEAVY, "pydantic", "watcher.config", "watcher.runtime.logging")

PROBE = """
import json, sys
from watcher.cli.main import main
code = main(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "watcher.toml").write_text(
        f'[watch]\ndata_dir = "{tmp_path / "data"}"\n[state]\ndir = "{tmp_path / "state"}"\n'
    )
    return tmp_path


def _loaded(cwd: Path, *argv: str, tty: bool = False) -> set[str]:
    """The modules a real run of `watcher ARGV` imported (it must succeed); ``tty``: its
    stdout is a terminal (a pseudo-terminal), as when a user types the command."""
    report = cwd / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    primary, secondary = pty.openpty() if tty else (None, None)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", PROBE, str(report), *argv],
            cwd=cwd,
            env=env,
            stdout=secondary if tty else subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        for fd in (primary, secondary):
            if fd is not None:
                os.close(fd)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(report.read_text())
    assert result["code"] == 0, proc.stderr
    return set(result["modules"])


def _heavy(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.mark.parametrize(
    "argv",
    [
        ("check-config",),
        ("status",),  # piped: plain text, no rich
        ("status", "--json"),
        ("history",),
        ("history", "--json"),
        ("hash", "tiny"),
        ("hash", "tiny", "--json", "--manifest"),
        # The console renderer (a TTY's default) needs no rich either.
        ("--log-format", "console", "check-config"),
    ],
    ids=" ".join,
)
def test_config_commands_import_nothing_heavy(workdir: Path, argv: tuple[str, ...]) -> None:
    assert _heavy(_loaded(workdir, *argv), HEAVY) == []


@pytest.mark.parametrize(
    "argv",
    [("--help",), ("service-unit",), ("--version",), ("webhooks", "install", "--help")],
    ids=" ".join,
)
def test_config_free_commands_import_no_config_stack(workdir: Path, argv: tuple[str, ...]) -> None:
    assert _heavy(_loaded(workdir, *argv), CONFIG_FREE_HEAVY) == []


def test_status_on_a_terminal_loads_rich_only_to_draw(workdir: Path) -> None:
    """The one light command that draws tables, on a terminal: rich, nothing else heavy."""
    modules = _loaded(workdir, "status", tty=True)
    assert "rich.table" in modules
    assert _heavy(modules, tuple(n for n in HEAVY if n != "rich")) == []


def test_report_via_the_daemon_imports_no_mlflow(workdir: Path) -> None:
    """`report-accuracy --via-daemon` posts to a running intake (here: the real route on
    the real endpoint, in this process): the stdlib's HTTP client, nothing of MLflow or the
    daemon, not even httpx (it imports rich through its own command line)."""
    from watcher.monitor import table
    from watcher.monitor.intake import AccuracyIntake
    from watcher.monitor.table import ModelRow
    from watcher.runtime.http import HttpEndpoint
    from watcher.runtime.state import open_state, utcnow

    token = "import-graph-token-0123456789"
    state = open_state(workdir / "state")
    with state.transaction() as tx:
        table.save(tx, "m", ModelRow("1", {"1": "Production"}), utcnow(), None)
    route = AccuracyIntake(token, ["*"], workdir / "state", lambda _model: None)
    endpoint = HttpEndpoint("127.0.0.1:0", [], routes=[route])
    endpoint.start()
    try:
        (workdir / "token").write_text(token)
        with (workdir / "watcher.toml").open("a") as cfg:
            port = endpoint.address[1]
            cfg.write(f'[http]\nlisten = "127.0.0.1:{port}"\ntoken_file = "{workdir / "token"}"\n')
        argv = ("report-accuracy", "--via-daemon", "--model", "m", "--accuracy", "0.9")
        modules = _loaded(workdir, *argv, "--samples", "10")
    finally:
        endpoint.stop()
        route.close()
        state.close()
    assert 1 == state_rows(workdir / "state")
    assert _heavy(modules, HEAVY) == []


def state_rows(state_dir: Path) -> int:
    import sqlite3

    with sqlite3.connect(state_dir / "state.db") as conn:
        return int(conn.execute("SELECT count(*) FROM intake_observations").fetchone()[0])
