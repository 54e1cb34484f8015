"""Trigger backends in a child process: ``local`` runs ``python -m pipeline.run``,
``command`` runs a configured argv with the run conf as JSON on stdin; never through a shell.

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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from watcher.errors import TriggerError
from watcher.ports import SubmitResult, TriggerUnavailable
from watcher.runtime.lock import pid_alive

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


class _ChildTrigger:
    """Shared by local and command: spawn under the supervisor, follow by exit file."""

    kind = "child"
    serial = True
    dag_id: str | None = None  # no DAG: nothing to pause or unpause
    base_url: str | None = None

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

    def is_paused(self) -> bool | None:
        return None  # a child process has no pause switch

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
