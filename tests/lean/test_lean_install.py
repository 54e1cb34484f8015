"""The daemon alone (`pip install registry-watcher`, no extras) from the built wheel, in a
fresh venv, against a real `mlflow server`: `watcher run`, `status` and `rollback` work,
and neither Airflow nor scikit-learn nor full MLflow is installed.

The venv gets the locked versions (`uv export` of uv.lock's base dependencies) from uv's
cache, then the wheel with `--no-deps`; `uv pip check` proves the wheel's own requirements
are met by that set (benchmarks/lean_install.py builds it the same way to measure it).
PyPI is asked only when the cache lacks something.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from benchmarks.lean_install import build_lean_venv, clean_env
from tests.rollback.test_cli_rollback import seed
from tests.runtime.conftest import free_port
from watcher.backends.mlflow_registry import MlflowRegistry

REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 120.0
# Not one of them may be importable in the lean venv (full mlflow is checked by metadata:
# mlflow-skinny installs the same `mlflow` package).
ABSENT = ("airflow", "sklearn", "numpy", "pandas", "scipy", "sqlalchemy")
PROBE = """
import importlib.metadata as md, importlib.util as u, json, sys, watcher
names = {d.metadata["Name"] for d in md.distributions()}
print(json.dumps({
    "found": [m for m in sys.argv[1:] if u.find_spec(m) is not None],
    "mlflow": sorted(names & {"mlflow", "mlflow-skinny"}),
    "watcher": watcher.__file__,
}))
"""


@dataclass
class Lean:
    root: Path
    bin: Path

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "watcher"), *args],
            cwd=cwd,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> Lean:
    """A fresh venv with the wheel and the locked base dependencies only."""
    root = tmp_path_factory.mktemp("lean")
    return Lean(root, build_lean_venv(root) / "bin")


@pytest.mark.slow
def test_the_lean_venv_has_no_extras(lean: Lean) -> None:
    """No Airflow, scikit-learn, numpy/pandas/scipy, SQLAlchemy, full mlflow; the daemon
    itself comes from the wheel (not this checkout)."""
    done = subprocess.run(
        [str(lean.bin / "python"), "-c", PROBE, *ABSENT],
        cwd=lean.root,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    found = json.loads(done.stdout)
    assert [] == found["found"]
    assert ["mlflow-skinny"] == found["mlflow"]
    assert found["watcher"].startswith(str(lean.root / "venv"))


@pytest.mark.slow
def test_settings_that_need_the_pipeline_extra_exit_2(lean: Lean, tmp_path: Path) -> None:
    """Embedded defaults (SQLite store, local backend), the evaluator, drift keys and
    `watcher demo` name what needs the extra and how to install it; no traceback."""
    (tmp_path / "watcher.toml").write_text(
        f'[state]\ndir = "{tmp_path / "state"}"\n[watch]\ndata_dir = "{tmp_path / "d"}"\n'
        f'[monitor]\nfeedback_dir = "{tmp_path / "fb"}"\n[drift]\nalert = false\n'
    )
    done = lean.run("run", cwd=tmp_path)
    assert 2 == done.returncode, done.stderr
    for key in ("mlflow.tracking_uri (unset)", 'trigger.backend = "local"'):
        assert key in done.stderr
    assert "monitor.feedback_dir" in done.stderr and "drift.alert" in done.stderr
    assert "pip install 'registry-watcher[pipeline]'" in done.stderr
    assert "Traceback" not in done.stderr
    demo = lean.run("demo", cwd=tmp_path)
    assert 2 == demo.returncode and "watcher demo" in demo.stderr, demo.stderr
    assert not (tmp_path / "state").exists()  # refused before anything started


class Daemon:
    """`watcher run` with its JSON log lines read on a thread, to wait on events."""

    def __init__(self, lean: Lean, config: Path) -> None:
        self.proc = subprocess.Popen(
            [str(lean.bin / "watcher"), "--config", str(config), "--log-format", "json", "run"],
            cwd=config.parent,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, event: str, **fields: str) -> dict[str, object]:
        deadline = time.monotonic() + DEADLINE_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") == event and all(record.get(k) == v for k, v in fields.items()):
                return dict(record)
        raise AssertionError(f"no {event} {fields} in {DEADLINE_S} s:\n{''.join(self.seen)}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=DEADLINE_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=DEADLINE_S)
            self.reader.join(timeout=DEADLINE_S)  # EOF once the process is gone
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            while not self.lines.empty():  # for the failure message
                self.seen.append(self.lines.get_nowait())


@pytest.fixture
def daemon_config(tmp_path: Path, mlflow_server: str) -> tuple[Path, str, str]:
    """A server-backed config with the command backend; the seeded model (v2 over v1)."""
    name = seed(mlflow_server, "alias")
    port = free_port()
    config = tmp_path / "watcher.toml"
    config.write_text(
        f'[watch]\ndata_dir = "{tmp_path / "data"}"\n[state]\ndir = "{tmp_path / "state"}"\n'
        f'[mlflow]\ntracking_uri = "{mlflow_server}"\n'
        '[trigger]\nbackend = "command"\ncommand = ["true"]\n'
        f'[monitor]\nmodels = ["{name}"]\n[http]\nlisten = "127.0.0.1:{port}"\n'
        "[alerts]\nlog = false\n"
    )
    return config, name, f"http://127.0.0.1:{port}"


@pytest.mark.service
@pytest.mark.slow
def test_run_status_rollback_against_mlflow(
    lean: Lean, mlflow_server: str, daemon_config: tuple[Path, str, str]
) -> None:
    """The lean daemon polls the server and is healthy; `status` shows Production v2;
    `rollback` moves it to v1 in MLflow (v2 quarantined); the daemon sees the move."""
    config, name, url = daemon_config
    daemon = Daemon(lean, config)
    try:
        daemon.wait_for("registry_first_poll")
        daemon.wait_for("ready")
        health = httpx.get(f"{url}/healthz", timeout=10)
        assert 200 == health.status_code, health.text
        assert health.json()["checks"]["monitor"]["mlflow_reachable"] is True

        status = lean.run("--config", str(config), "status", cwd=config.parent)
        assert 0 == status.returncode, status.stderr
        assert "running" in status.stdout and name in status.stdout and "v2" in status.stdout

        done = lean.run(
            "--config", str(config), "rollback", "--model", name, "--yes", "--reason", "lean",
            cwd=config.parent,
        )  # fmt: skip
        assert 0 == done.returncode, done.stderr
        assert "rolled back Production v2 → v1" in done.stdout
        reg = MlflowRegistry(mlflow_server, "alias")
        assert "1" == reg.production(name)
        assert reg.get_version(name, "2").quarantined  # type: ignore[union-attr]
        daemon.wait_for("registry_event", kind="registry.production_changed", version="1")
    finally:
        code = daemon.stop()
    assert 0 == code, "".join(daemon.seen)


@pytest.mark.service
@pytest.mark.slow
def test_rollback_in_stage_mode(lean: Lean, mlflow_server: str, tmp_path: Path) -> None:
    """Stage mode through mlflow-skinny too: v2 Archived, v1 Production."""
    name = seed(mlflow_server, "stage")
    (tmp_path / "watcher.toml").write_text(
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        f'[mlflow]\ntracking_uri = "{mlflow_server}"\nregistry_mode = "stage"\n'
        '[trigger]\nbackend = "command"\ncommand = ["true"]\n[alerts]\nlog = false\n'
    )
    done = lean.run("rollback", "--model", name, "--yes", "--reason", "lean", cwd=tmp_path)
    assert 0 == done.returncode, done.stderr
    reg = MlflowRegistry(mlflow_server, "stage")
    assert "1" == reg.production(name)
    assert "Archived" == reg.get_version(name, "2").stage  # type: ignore[union-attr]


def _sync_lines() -> Iterator[tuple[str, str]]:
    """Every `uv sync` the repo runs: the Makefile's and the workflows' steps."""
    for line in (REPO / "Makefile").read_text().splitlines():
        if line.startswith("\t") and "uv) sync" in line.lower():  # a recipe line
            yield "Makefile", line
    for path in sorted((REPO / ".github/workflows").glob("*.yml")):
        for job in yaml.safe_load(path.read_text())["jobs"].values():
            for step in job["steps"]:
                for line in step.get("run", "").splitlines():
                    if "uv sync" in line:
                        yield path.name, line


def test_every_sync_installs_the_extras() -> None:
    """A bare `uv sync` installs the lean daemon only and REMOVES Airflow, MLflow and
    scikit-learn from a full venv: every sync in the repo asks for the extras."""
    lines = list(_sync_lines())
    assert {"Makefile", "train_and_validate.yml"} <= {where for where, _ in lines}
    bare = [f"{where}: {line.strip()}" for where, line in lines if "--all-extras" not in line]
    assert not bare, bare
