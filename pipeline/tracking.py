"""MLflow plumbing shared by train/register/validate: URIs, clients, error mapping.

``import mlflow`` is slow (seconds), so every import of it stays inside functions.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import BackendError, BadInputError

if TYPE_CHECKING:
    from mlflow import MlflowClient

# Error codes MLflow uses for "no such model/version/run/alias" (a missing alias
# is INVALID_PARAMETER_VALUE, not RESOURCE_DOES_NOT_EXIST).
NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"})


def small_retry_budget() -> None:
    """A CLI should fail within seconds, not retry 7 times over 2 minutes (MLflow's default)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def client(tracking_uri: str | None = None) -> MlflowClient:
    """A client for ``tracking_uri`` (or MLFLOW_TRACKING_URI); fluent APIs are pointed at it too.

    The fluent API (``start_run``, ``log_model``, ``load_model``) reads global URIs,
    so an explicit URI is installed globally for this process as well.
    """
    import mlflow

    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
    uri = mlflow.get_tracking_uri()
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def is_not_found(exc: BaseException) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in NOT_FOUND_CODES


def translate(exc: BaseException, what: str) -> Exception:
    """Map a third-party exception to BadInputError (not found) or BackendError."""
    if is_not_found(exc):
        return BadInputError(f"{what} not found")
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BackendError(f"{what}: {first_line}")


def git_commit() -> str | None:
    """Commit of the code being run: CI env var first, else ``git rev-parse`` of this checkout."""
    for var in ("WATCHER_GIT_COMMIT", "GITHUB_SHA"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None
