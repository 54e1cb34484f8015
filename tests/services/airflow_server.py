"""Session fixture: a real Airflow 3 (api-server, scheduler, dag-processor) on SQLite.

Facts this relies on are in shared/docs/services.md: no ``airflow standalone`` (it
orphans its children and binds 0.0.0.0), ``--skip-serve-logs`` on the scheduler
(else a log server on all interfaces), parallelism 4 (else ~40 processes), and a
passwords file written before the api-server starts.

One Airflow serves the whole session with two DAGs: the project's real
``train_pipeline`` (tests/e2e; left paused, as a fresh deployment is, until a test
unpauses it the way the README says) and the two-task stand-in ``stand_in_pipeline``
from ``tests/trigger/dags`` (fast trigger-protocol tests; unpaused here). The
workers get the worker environment the README asks for: ``MLFLOW_TRACKING_URI``
(the session ``mlflow server``) and the ``DagRunFailed`` channel (the session
Alertmanager); the real DAG keeps its real retry count, with a shorter delay.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

DAG_ID = "train_pipeline"  # the real dags/train_pipeline.py
STAND_IN_DAG_ID = "stand_in_pipeline"  # tests/trigger/dags: echoes its conf, no MLflow
E2E_EXPERIMENT = "airflow-e2e"  # the workers' default experiment (WATCHER_EXPERIMENT)
DAG_RETRY_DELAY_S = "15"  # retries stay 2; a transient failure costs 15 s, not 5 min
USERNAME = "admin"
PASSWORD = "admin"
STARTUP_TIMEOUT_S = 180.0  # measured 17-24 s idle; generous for a loaded 2-core box
STOP_GRACE_S = 15.0
SQLITE_BUSY_TIMEOUT_S = 60
HTTP_TIMEOUT_S = 30.0  # generous: other test sessions share the 2 cores
# Fixed secrets: tokens survive an api-server restart; >= 64 bytes avoids a warning.
JWT_SECRET = "registry-watcher-tests-jwt-secret-" + "0123456789abcdef" * 4
API_SECRET_KEY = "registry-watcher-tests-api-secret-key"
STAND_IN_DAGS = Path(__file__).resolve().parent.parent / "trigger" / "dags"
REAL_DAGS = Path(__file__).resolve().parents[2] / "dags"
# The team-DAG example (issue 19): its DAG and its training module, side by side.
EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "examples" / "custom_dag"
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"


class AirflowStartupError(RuntimeError):
    """A component died or never became ready; the message carries the log tails."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _stop_groups(procs: list[subprocess.Popen[bytes]], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every process group at once, then SIGKILL whatever is left after the grace."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    for proc in procs:
        # The group can outlive its leader (task runners, gunicorn-style workers).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(timeout=5)


@dataclass
class AirflowServer:
    """Handle on the running components; tests talk to ``base_url`` over REST."""

    base_url: str
    username: str
    password: str
    dags_folder: Path
    home: Path
    port: int
    env: dict[str, str] = field(repr=False)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    # -- process management ---------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.home / "proc-logs" / f"{name}.log"

    def spawn(
        self,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        prefix: tuple[str, ...] = (),
    ) -> None:
        """Start ``airflow *args``; ``env``/``cwd``/``prefix`` (a wrapper command) for a
        component "on another host" (tests/scaleout's Celery workers), else the server's
        home and env."""
        log_path = self.log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            # start_new_session: own process group, so teardown reaches every child.
            self.procs[name] = subprocess.Popen(
                [*prefix, str(AIRFLOW_BIN), *args],
                env=env or self.env,
                cwd=cwd or self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tails(self) -> str:
        return "\n".join(
            f"----- {name} (exit {proc.poll()}) -----\n{_tail(self.log_path(name))}"
            for name, proc in self.procs.items()
        )

    def _fail(self, message: str) -> AirflowStartupError:
        tails = self.log_tails()
        print(f"{message}\n{tails}", file=sys.stderr)
        return AirflowStartupError(f"{message}\n{tails}")

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise self._fail(f"airflow {name} exited with {proc.returncode}")

    def _wait(
        self, what: str, ready: Callable[[], bool], timeout_s: float = STARTUP_TIMEOUT_S
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if ready():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise self._fail(f"timed out after {timeout_s:.0f} s waiting for {what}")

    def wait_log(self, name: str, *parts: str) -> None:
        """Wait until component ``name``'s log has a line containing every one of ``parts``."""

        def seen() -> bool:
            path = self.log_path(name)
            text = path.read_text(errors="replace") if path.exists() else ""
            return any(all(p in line for p in parts) for line in text.splitlines())

        self._wait(f"{' … '.join(parts)!r} in the {name} log", seen)

    def _api_healthy(self) -> bool:
        resp = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=HTTP_TIMEOUT_S)
        return resp.status_code == 200

    def start_api_server(self) -> None:
        """(Re)start the api-server and wait until it answers."""
        proc = self.procs.get("api-server")
        if proc is not None and proc.poll() is None:
            return
        self.spawn(
            "api-server", "api-server", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1",
        )  # fmt: skip
        self._wait("the api-server", self._api_healthy)

    def stop_api_server(self) -> None:
        """Stop the api-server (simulated outage); the scheduler keeps running."""
        proc = self.procs.get("api-server")
        if proc is not None:
            _stop_groups([proc])

    def stop(self) -> None:
        _stop_groups(list(self.procs.values()))

    # -- REST helpers ---------------------------------------------------------------

    def token(self) -> str:
        resp = httpx.post(
            f"{self.base_url}/auth/token",
            json={"username": self.username, "password": self.password},
            timeout=HTTP_TIMEOUT_S,
        )
        resp.raise_for_status()
        token: str = resp.json()["access_token"]
        return token

    def client(self) -> httpx.Client:
        """An authenticated client for assertions made by tests."""
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=HTTP_TIMEOUT_S,
        )


def airflow_env(home: Path, dags_folder: Path, port: int, extra: dict[str, str]) -> dict[str, str]:
    # Drop any AIRFLOW* settings of the calling shell so the servers are hermetic.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    base_url = f"http://127.0.0.1:{port}"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            # sqlite3's 5 s busy timeout gives "database is locked" 500s on a loaded box.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                f"sqlite:///{home.resolve()}/airflow.db?timeout={SQLITE_BUSY_TIMEOUT_S}"
            ),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
            "AIRFLOW__API__SECRET_KEY": API_SECRET_KEY,
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # New files are seen within refresh_interval; re-parsing known files every 5 s
            # only adds SQLite writes (override via airflow_extra_env to test DAG edits).
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
        }
    )
    env.update(extra)
    return env


def boot(server: AirflowServer, dag_ids: tuple[str, ...]) -> None:
    """Migrate the DB, start scheduler, dag-processor and api-server, and wait until
    ``dag_ids`` are registered and the scheduler is healthy (DAG import errors fail
    fast). The caller stops the server on failure."""
    started = time.monotonic()
    migrate = subprocess.run(
        [str(AIRFLOW_BIN), "db", "migrate"],
        env=server.env,
        cwd=server.home,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
        check=False,
    )
    if migrate.returncode != 0:
        raise AirflowStartupError(
            f"airflow db migrate failed ({migrate.returncode}):\n{migrate.stdout[-3000:]}"
            f"\n{migrate.stderr[-3000:]}"
        )
    migrated = time.monotonic()
    server.spawn("scheduler", "scheduler", "--skip-serve-logs")
    server.spawn("dag-processor", "dag-processor")
    server.start_api_server()
    api_up = time.monotonic()
    headers = {"Authorization": f"Bearer {server.token()}"}
    dags_url = f"{server.base_url}/api/v2/dags"

    def dag_registered() -> bool:
        if all(
            httpx.get(f"{dags_url}/{d}", headers=headers, timeout=HTTP_TIMEOUT_S).status_code == 200
            for d in dag_ids
        ):
            return True
        # Fail fast on a DAG file that doesn't import instead of waiting out the timeout.
        errors = httpx.get(
            f"{server.base_url}/api/v2/importErrors", headers=headers, timeout=HTTP_TIMEOUT_S
        ).json()
        if errors.get("import_errors"):
            found = "\n".join(
                f"{e['filename']}:\n{e['stack_trace']}" for e in errors["import_errors"]
            )
            raise server._fail(f"DAG import errors in {server.dags_folder}:\n{found}")
        return False

    def scheduler_healthy() -> bool:
        body = httpx.get(f"{server.base_url}/api/v2/monitor/health", timeout=HTTP_TIMEOUT_S).json()
        return bool(body.get("scheduler", {}).get("status") == "healthy")

    server._wait(f"DAGs {', '.join(dag_ids)} to be registered", dag_registered)
    server._wait("a healthy scheduler", scheduler_healthy)
    print(
        f"\nairflow on {server.base_url}: migrate {migrated - started:.1f} s,"
        f" api {api_up - migrated:.1f} s, DAGs {time.monotonic() - api_up:.1f} s",
        file=sys.stderr,
    )


@pytest.fixture(scope="session")
def airflow_dags_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the dag-processor parses: copies of the real DAG, the stand-in and the
    custom-DAG example (paused, as every new DAG starts, until its test unpauses it)."""
    folder = tmp_path_factory.mktemp("airflow-dags")
    for src in [*REAL_DAGS.glob("*.py"), *STAND_IN_DAGS.glob("*.py"), *EXAMPLE_DAGS.glob("*.py")]:
        shutil.copy2(src, folder / src.name)
    return folder


@pytest.fixture(scope="session")
def airflow_extra_env(mlflow_server: str, alertmanager: str) -> dict[str, str]:
    """The worker environment the README's Quick start lists, for the real DAG."""
    return {
        "MLFLOW_TRACKING_URI": mlflow_server,
        "WATCHER_ALERTS__ALERTMANAGER__URL": alertmanager,
        "WATCHER_EXPERIMENT": E2E_EXPERIMENT,
        "WATCHER_DAG_RETRY_DELAY_SECONDS": DAG_RETRY_DELAY_S,
        "MLFLOW_CONFIGURE_LOGGING": "false",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",  # a loaded 2-core box: slow, not down
    }


@pytest.fixture(scope="session")
def airflow_server(
    tmp_path_factory: pytest.TempPathFactory,
    airflow_dags_folder: Path,
    airflow_extra_env: dict[str, str],
) -> Iterator[AirflowServer]:
    """Real Airflow 3 on 127.0.0.1; both DAGs registered, the stand-in unpaused."""
    started = time.monotonic()
    home = tmp_path_factory.mktemp("airflow-home")
    port = _free_port()
    (home / "passwords.json").write_text(json.dumps({USERNAME: PASSWORD}), encoding="utf-8")
    server = AirflowServer(
        base_url=f"http://127.0.0.1:{port}",
        username=USERNAME,
        password=PASSWORD,
        dags_folder=airflow_dags_folder,
        home=home,
        port=port,
        env=airflow_env(home, airflow_dags_folder, port, airflow_extra_env),
    )
    try:
        boot(server, (STAND_IN_DAG_ID, DAG_ID))
        resp = httpx.patch(
            f"{server.base_url}/api/v2/dags/{STAND_IN_DAG_ID}",
            headers={"Authorization": f"Bearer {server.token()}"},
            json={"is_paused": False},
            timeout=HTTP_TIMEOUT_S,
        )
        if resp.status_code != 200:
            raise server._fail(
                f"unpausing {STAND_IN_DAG_ID!r} answered {resp.status_code}: {resp.text}"
            )
    except BaseException:
        server.stop()
        raise
    print(  # startup time is a figure worth seeing in -s runs
        f"\nairflow_server ready on {server.base_url} in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
    try:
        yield server
    finally:
        server.stop()


def _proc_ip(hex_addr: str) -> str:
    """Decode the address column of /proc/net/tcp{,6} (little-endian 32-bit words)."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words)


def listening_sockets(pgids: set[int]) -> set[tuple[str, int]]:
    """(ip, port) of TCP listeners and bound UDP sockets owned by processes in ``pgids``."""
    inodes: set[str] = set()
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            stat = (proc_dir / "stat").read_text()
            pgrp = int(stat.rsplit(")", 1)[1].split()[2])
            if pgrp not in pgids:
                continue
            for fd in (proc_dir / "fd").iterdir():
                target = str(fd.readlink())
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue  # the process went away while we looked
    found: set[tuple[str, int]] = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if inode in inodes and (state == "0A" or table.startswith("udp")):  # 0A = LISTEN
                host, port = local.rsplit(":", 1)
                found.add((_proc_ip(host), int(port, 16)))
    return found
