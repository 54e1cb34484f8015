"""Trigger backends behind one port: submit a run for a dataset, then follow its state.

``airflow`` is :class:`watcher.backends.airflow.AirflowTrigger` (REST). ``local``
runs ``python -m pipeline.run`` and ``command`` runs a configured argv with the
run conf as JSON on stdin; both in a child process, never through a shell. Every
run conf carries the pipeline settings (:func:`pipeline_settings`).

A child run is started through a tiny Python supervisor that writes the child's
exit code to ``runs/<run_id>.exit`` when it ends, so a run's outcome is known
even after the daemon was restarted (or killed) while it ran. The
``runs/<run_id>.started`` marker, created exclusively before the spawn, is the
local equivalent of Airflow's 409: a second submit of the same run id is
"already exists", never a second run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from watcher.backends.airflow import SubmitResult, TriggerUnavailable
from watcher.errors import TriggerError
from watcher.runtime.lock import pid_alive

if TYPE_CHECKING:
    from watcher.config import Config

__all__ = [
    "CommandTrigger",
    "LocalTrigger",
    "SubmitResult",
    "Trigger",
    "TriggerUnavailable",
    "build_trigger",
    "pipeline_settings",
]

# Runs the child, then records its exit code atomically (tmp + rename).
_SUPERVISOR = (
    "import os, subprocess, sys\n"
    "out = sys.argv[1]\n"
    "try:\n"
    "    code = subprocess.call(sys.argv[2:])\n"
    "except OSError as exc:\n"
    "    sys.stderr.write(f'error: cannot run {sys.argv[2]!r}: {exc}\\n')\n"
    "    code = 127\n"
    "with open(out + '.tmp', 'w') as fh:\n"
    "    fh.write(str(code))\n"
    "os.replace(out + '.tmp', out)\n"
)
TERMINAL_STATES = frozenset({"success", "failed"})


class Trigger(Protocol):
    """The port the data watcher delivers through (AirflowTrigger satisfies it)."""

    # True: the backend starts whatever it is given at once, so the watcher hands it one
    # run at a time, in order (what ``max_active_runs=1`` does for the Airflow DAG).
    serial: bool

    def submit(self, run_id: str, conf: Mapping[str, Any]) -> SubmitResult:
        """Start run ``run_id``; an existing run counts as delivered (``created=False``).

        Raises TriggerUnavailable (retry later) or TriggerError (needs an operator).
        """
        ...

    def run_state(self, run_id: str) -> str | None:
        """queued | running | success | failed; None when the backend has no such run."""
        ...

    def close(self) -> None: ...


class _ChildTrigger:
    """Shared by local and command: spawn under the supervisor, follow by exit file."""

    kind = "child"
    serial = True

    def __init__(self, runs_dir: Path, *, env: Mapping[str, str] | None = None) -> None:
        self.runs_dir = runs_dir
        self.env = dict(os.environ if env is None else env)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def argv(self, run_id: str, conf: Mapping[str, Any]) -> list[str]:
        raise NotImplementedError

    def _paths(self, run_id: str) -> tuple[Path, Path, Path, Path]:
        if "/" in run_id or run_id.startswith("."):
            raise TriggerError(f"run id {run_id!r} is not usable as a file name")
        base = self.runs_dir / run_id
        return (
            base.with_name(run_id + ".started"),
            base.with_name(run_id + ".exit"),
            base.with_name(run_id + ".log"),
            base.with_name(run_id + ".conf.json"),
        )

    def submit(self, run_id: str, conf: Mapping[str, Any]) -> SubmitResult:
        started, exit_file, log_file, conf_file = self._paths(run_id)
        argv = self.argv(run_id, conf)
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(started, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return SubmitResult(run_id=run_id, created=False)
        except OSError as exc:
            raise TriggerUnavailable(f"{self.runs_dir}: cannot record run {run_id}: {exc}") from exc
        try:
            conf_file.write_text(json.dumps(dict(conf), sort_keys=True) + "\n", encoding="utf-8")
            env = {**self.env, "WATCHER_RUN_ID": run_id}
            with conf_file.open("rb") as stdin, log_file.open("ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-c", _SUPERVISOR, str(exit_file), *argv],
                    stdin=stdin,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # our own group: a stop can end the whole run
                )
            os.write(fd, json.dumps({"pid": proc.pid, "argv": argv}).encode())
        except OSError as exc:
            os.close(fd)
            started.unlink(missing_ok=True)
            raise TriggerUnavailable(f"cannot start run {run_id}: {exc}") from exc
        os.close(fd)
        self._procs[run_id] = proc
        return SubmitResult(run_id=run_id, created=True, state="running")

    def run_state(self, run_id: str) -> str | None:
        started, exit_file, _, _ = self._paths(run_id)
        proc = self._procs.get(run_id)
        if proc is not None and proc.poll() is None:
            return "running"
        if proc is not None:
            self._procs.pop(run_id, None)
        with contextlib.suppress(FileNotFoundError, ValueError):
            return "success" if int(exit_file.read_text().strip()) == 0 else "failed"
        if proc is not None:
            return "failed"  # the supervisor itself died (killed) before writing the code
        try:
            info = json.loads(started.read_text() or "{}")
        except FileNotFoundError:
            return None
        except ValueError:
            info = {}
        pid = info.get("pid")
        if isinstance(pid, int) and pid_alive(pid):
            return "running"  # started by a previous daemon process, still going
        return "failed"

    def exit_code(self, run_id: str) -> int | None:
        _, exit_file, _, _ = self._paths(run_id)
        try:
            return int(exit_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def summary(self, run_id: str) -> dict[str, Any] | None:
        """The child's last stdout line when it is a JSON object (pipeline.run prints one)."""
        _, _, log_file, _ = self._paths(run_id)
        try:
            with log_file.open("rb") as fh:
                fh.seek(max(0, log_file.stat().st_size - 65536))
                tail = fh.read().decode("utf-8", "replace").strip().splitlines()
        except OSError:
            return None
        for line in reversed(tail):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    return value
        return None

    def cancel(self, run_id: str) -> None:
        proc = self._procs.pop(run_id, None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)

    def close(self) -> None:
        """Children keep running (their outcome lands in the exit file); reap the dead.

        A live child is handed to a daemon thread that waits on it: dropping its Popen
        would leave a zombie when it ends (and a ResourceWarning now).
        """
        for proc in self._procs.values():  # kept: cancel() may still stop one
            if proc.poll() is None:
                threading.Thread(target=proc.wait, name="reap-run", daemon=True).start()


class LocalTrigger(_ChildTrigger):
    """``python -m pipeline.run`` with the run conf (settings included) as ``--conf``."""

    kind = "local"

    def __init__(
        self,
        runs_dir: Path,
        *,
        tracking_uri: str | None = None,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(runs_dir, env=env)
        self.python = python
        if tracking_uri:
            self.env["MLFLOW_TRACKING_URI"] = tracking_uri

    def argv(self, run_id: str, conf: Mapping[str, Any]) -> list[str]:
        rest = {k: v for k, v in conf.items() if k not in ("data_dir", "data_hash")}
        return [
            self.python, "-m", "pipeline.run",
            "--data-dir", str(conf["data_dir"]),
            "--data-hash", str(conf["data_hash"]),
            "--dag-run-id", run_id,
            "--conf", json.dumps(rest, sort_keys=True),
        ]  # fmt: skip


class CommandTrigger(_ChildTrigger):
    """A configured argv (no shell); the conf arrives as one JSON object on stdin."""

    kind = "command"

    def __init__(
        self, runs_dir: Path, command: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> None:
        if not command:
            raise TriggerError("trigger.command is empty")
        super().__init__(runs_dir, env=env)
        self.command = list(command)

    def argv(self, run_id: str, conf: Mapping[str, Any]) -> list[str]:
        return list(self.command)


def build_trigger(config: Config) -> Trigger:
    """The configured backend; secrets come from the validated config, never logged."""
    trig = config.trigger
    runs_dir = config.state.dir / "runs"
    if trig.backend == "airflow":
        from watcher.backends.airflow import AirflowTrigger

        af = trig.airflow
        return AirflowTrigger(
            af.url,
            trig.dag_id,
            username=af.username,
            password=af.password.get_secret_value() if af.password else None,
            token=af.token.get_secret_value() if af.token else None,
            timeout=af.timeout,
        )
    if trig.backend == "command":
        return CommandTrigger(runs_dir, trig.command)
    return LocalTrigger(runs_dir, tracking_uri=config.tracking_uri)


def pipeline_settings(config: Config) -> dict[str, Any]:
    """The effective pipeline settings under their run conf names (``pipeline.config``).

    Every run conf carries them, on every backend, so a run trains and promotes with what
    ``check-config`` shows; they win over the worker's ``WATCHER_*`` env defaults. The
    worker keeps its own ``MLFLOW_TRACKING_URI`` (the watcher's may be a local path).
    """
    pipe = config.pipeline
    return {
        "model_name": pipe.model_name,
        "registry_mode": config.mlflow.registry_mode,
        "promote": pipe.promote,
        "threshold": pipe.threshold,
        "target": pipe.target_column,
        "n_estimators": pipe.n_estimators,
        "max_depth": pipe.max_depth,  # null = unbounded, explicitly
    }


def wait_terminal(trigger: Trigger, run_id: str, timeout: float, poll: float = 0.2) -> str | None:
    """Poll until the run is terminal or ``timeout`` passes (tests and one-shot CLI use)."""
    deadline = time.monotonic() + timeout
    state = trigger.run_state(run_id)
    while state not in TERMINAL_STATES and time.monotonic() < deadline:
        time.sleep(poll)
        state = trigger.run_state(run_id)
    return state
