"""The distributed stack on loopback, from Debian packages and PyPI only.

- PostgreSQL (Debian ``postgresql``): a throwaway cluster (``initdb`` + ``postgres`` in
  a temp dir, its own port, TCP on 127.0.0.1 only) holding two databases: Airflow's
  metadata and MLflow's backend store.
- Redis (Debian ``redis-server``, its own port and dir, no persistence): the Celery broker.
- MLflow ``server`` on PostgreSQL with proxied artifacts (``--serve-artifacts``,
  ``--artifacts-destination`` in a 0700 dir of the server's): clients use HTTP only.
- Airflow 3 with the CeleryExecutor: api-server, scheduler and dag-processor (the
  session Airflow's :func:`boot`), and two ``airflow celery worker`` processes, each
  with its own AIRFLOW_HOME and working dir, as if on other hosts.

The workers see the machine as another host would: as root (the CI) each runs in
its own mount namespace (``unshare --mount``) where the watcher's dirs (pytest's
temp root: the live data and state dirs) and the MLflow server's dir are empty
read-only tmpfs. They read the DAG copy and the snapshot dir standing for shared
storage, and reach MLflow over HTTP only. PostgreSQL refuses root: as root it runs
as ``nobody``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.services.airflow_server import (
    DAG_ID,
    E2E_EXPERIMENT,
    PASSWORD,
    REAL_DAGS,
    USERNAME,
    AirflowServer,
    AirflowStartupError,
    airflow_env,
    boot,
)
from tests.services.mlflow_server import MlflowServer, free_port

IS_ROOT = os.geteuid() == 0
# PostgreSQL refuses to run as root: then it runs as this account.
PG_USER = "nobody" if IS_ROOT else None
# A worker's wrapper: hide each path up to "--" under an empty read-only tmpfs in a
# mount namespace of its own, then exec the worker (the rest of the arguments).
HIDE_SCRIPT = (
    'while [ "$1" != -- ]; do mount -t tmpfs -o ro,size=4k hidden "$1" || exit 1; shift; done;'
    ' shift; exec "$@"'
)
WORKERS = ("worker-1", "worker-2")
STARTUP_TIMEOUT_S = 180.0  # generous: a loaded 2-core box, several servers starting at once
# A SIGKILLed worker's task is failed (and retried) once it misses heartbeats this long
# (Airflow's default is 300 s); the scheduler checks every 5 s. A live task heartbeats
# every 5 s, so a slow api-server on a loaded box has 40 s before a false timeout.
HEARTBEAT_TIMEOUT_S = "45"
DAG_RETRY_DELAY_S = "10"  # retries stay 2 (see dags/train_pipeline.py); the delay is 5 min
DEBIAN_HINT = "apt-get install postgresql redis-server (`make test` installs them)"


def pg_bin(name: str) -> Path:
    """A PostgreSQL server binary of the Debian package (not on PATH there)."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise AirflowStartupError(f"no /usr/lib/postgresql/*/bin/{name}: {DEBIAN_HINT}")
    return found[-1]


def _wait(what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
            raise AirflowStartupError(f"{what} not ready (exit {proc.poll()}):\n{tail}")
        time.sleep(0.3)


def _start(
    cmd: list[str], log: Path, cwd: Path, user: str | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            cwd=cwd,
            user=user,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: teardown kills its children too
        )


def _own(path: Path, mode: int) -> Path:
    """Create ``path`` for PostgreSQL's account."""
    path.mkdir(mode=mode)
    if PG_USER is not None:
        shutil.chown(path, PG_USER)
    return path


def start_postgres(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A throwaway cluster in ``root/pg``: trust auth (loopback test data), no fsync."""
    data, port, log = _own(root / "pg", 0o700), free_port(), root / "postgres.log"
    subprocess.run(
        [str(pg_bin("initdb")), "-D", str(data / "data"), "-U", "postgres", "--auth=trust",
         "--no-locale", "-E", "UTF8", "--no-sync"],
        cwd=data, user=PG_USER, check=True, capture_output=True, timeout=STARTUP_TIMEOUT_S,
    )  # fmt: skip
    proc = _start(
        [str(pg_bin("postgres")), "-D", str(data / "data"), "-p", str(port),
         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}",
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
        log, data, PG_USER,
    )  # fmt: skip
    import psycopg

    def ready() -> bool:
        try:
            # autocommit: CREATE DATABASE refuses a transaction.
            conn = psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", dbname="postgres", autocommit=True
            )
        except psycopg.OperationalError:
            return False
        with conn:
            for db in ("airflow", "mlflow"):
                conn.execute(f"CREATE DATABASE {db}")
        return True

    _wait("PostgreSQL", ready, proc, log)
    return proc, port


def start_redis(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    import redis

    data, port, log = root / "redis", free_port(), root / "redis.log"
    data.mkdir()
    proc = _start(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
         "--save", "", "--appendonly", "no", "--daemonize", "no"],
        log, data,
    )  # fmt: skip

    def ready() -> bool:
        try:
            return bool(redis.Redis(host="127.0.0.1", port=port).ping())
        except redis.RedisError:
            return False

    _wait("Redis", ready, proc, log)
    return proc, port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class Stack:
    """Handles on every server; ``snapshots`` is the shared storage the workers read."""

    root: Path
    airflow: AirflowServer
    mlflow: MlflowServer
    snapshots: Path
    worker_homes: dict[str, Path]
    cleanup: contextlib.ExitStack = field(repr=False)

    def worker_of(self, run_id: str, task_id: str, attempt: int) -> str | None:
        """The worker whose AIRFLOW_HOME has that try's task log: where it ran."""
        for name, home in self.worker_homes.items():
            log = (
                home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task_id}"
                / f"attempt={attempt}.log"
            )  # fmt: skip
            if log.exists():
                return name
        return None

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole process group (Celery pool, task supervisor, task)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.airflow.procs[name].pid, signal.SIGKILL)
        self.airflow.procs[name].wait(timeout=30)

    def stop(self) -> None:
        """Airflow, MLflow, Redis, PostgreSQL, then the temp dir (the reverse of start)."""
        self.cleanup.close()


def _airflow_settings(pg_port: int, redis_port: int, mlflow_url: str) -> dict[str, str]:
    pg = f"postgres@127.0.0.1:{pg_port}/airflow"
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://{pg}",
        # Else Airflow derives postgresql+asyncpg: psycopg 3 serves both, one driver.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"postgresql+psycopg://{pg}",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg://{pg}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
        # A killed worker's unacked task comes back from Redis only after this (1 day):
        # the retry on the other worker is Airflow's, not a broker redelivery.
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": HEARTBEAT_TIMEOUT_S,
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        # The worker environment of the README: MLflow over HTTP, the experiment, and
        # the shorter retry delay (the DAG reads it at parse time, on every host).
        "MLFLOW_TRACKING_URI": mlflow_url,
        "WATCHER_EXPERIMENT": E2E_EXPERIMENT,
        "WATCHER_DAG_RETRY_DELAY_SECONDS": DAG_RETRY_DELAY_S,
        "MLFLOW_CONFIGURE_LOGGING": "false",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
    }


def _start_workers(stack: Stack, settings: dict[str, str], hidden: list[Path]) -> None:
    server = stack.airflow
    prefix: tuple[str, ...] = ()
    if IS_ROOT:
        paths = [str(p) for p in [*hidden, stack.mlflow.root]]
        prefix = ("unshare", "--mount", "--", "sh", "-c", HIDE_SCRIPT, "hide", *paths, "--")
    for name in WORKERS:
        home = stack.worker_homes[name]
        env = airflow_env(home, server.dags_folder, server.port, settings) | {"HOME": str(home)}
        server.spawn(
            name, "celery", "worker", "--concurrency", "1", "--skip-serve-logs",
            "--celery-hostname", f"{name}@%h", env=env, cwd=home, prefix=prefix,
        )  # fmt: skip


def _layout(root: Path) -> tuple[Path, Path, dict[str, Path]]:
    """The hosts' dirs in ``root``: the DAG copy, the shared snapshot dir, worker homes."""
    root.chmod(0o755)
    (root / "airflow").mkdir()
    (root / "mlflow").mkdir(mode=0o700)  # the artifact store: only the server writes
    dags, snapshots = root / "dags", root / "snapshots"
    dags.mkdir()
    snapshots.mkdir()  # written by the watcher, read by the workers
    for src in REAL_DAGS.glob("*.py"):
        shutil.copy2(src, dags / src.name)
    homes = {name: root / name for name in WORKERS}
    for home in homes.values():
        home.mkdir()
    return dags, snapshots, homes


def start_stack(hidden: list[Path]) -> Stack:
    """Start everything, the workers blind to ``hidden`` (the watcher's dirs); on failure
    stop what was started and raise (the log tails are in the message). MLflow starts
    while Airflow migrates, and the workers while MLflow finishes: ~1 min less."""
    started = time.monotonic()
    # Outside ``hidden`` (pytest's temp root): the workers read the DAGs and snapshots here.
    root = Path(tempfile.mkdtemp(prefix="scaleout-"))
    with contextlib.ExitStack() as cleanup, ThreadPoolExecutor(1) as pool:
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        dags, snapshots, homes = _layout(root)
        pg_proc, pg_port = start_postgres(root)
        cleanup.callback(_stop, pg_proc)
        redis_proc, redis_port = start_redis(root)
        cleanup.callback(_stop, redis_proc)
        mlflow = MlflowServer(
            root / "mlflow",
            backend_store_uri=f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/mlflow",
        )
        cleanup.callback(mlflow.stop)
        mlflow_up = pool.submit(mlflow.start, STARTUP_TIMEOUT_S)
        settings = _airflow_settings(pg_port, redis_port, mlflow.url)
        port, home = free_port(), root / "airflow"
        (home / "passwords.json").write_text(f'{{"{USERNAME}": "{PASSWORD}"}}', encoding="utf-8")
        airflow = AirflowServer(
            base_url=f"http://127.0.0.1:{port}",
            username=USERNAME,
            password=PASSWORD,
            dags_folder=dags,
            home=home,
            port=port,
            env=airflow_env(home, dags, port, settings),
        )
        cleanup.callback(airflow.stop)
        stack = Stack(root, airflow, mlflow, snapshots, homes, cleanup)
        boot(airflow, (DAG_ID,))
        _start_workers(stack, settings, hidden)
        mlflow_up.result()
        for name in WORKERS:  # Celery's banner line once the worker consumes from Redis
            airflow.wait_log(name, f"{name}@", " ready.")
        stack.cleanup = cleanup.pop_all()
    print(f"\nscaleout stack ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return stack
