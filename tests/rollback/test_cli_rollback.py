"""`watcher rollback` through the CLI against a real `mlflow server`, both registry modes."""

from __future__ import annotations

import contextlib
import io
import os
import pty
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from watcher.backends.mlflow_registry import MlflowRegistry
from watcher.cli.main import main
from watcher.ports import TAG_PREVIOUS, RegistryMode

WATCHER = str(Path(sys.executable).parent / "watcher")
pytestmark = pytest.mark.service


def seed(uri: str, mode: RegistryMode) -> str:
    """A model with v1 (Production first) and v2 promoted over it, lineage tag included."""
    from mlflow import MlflowClient

    name = f"rb-{mode}-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(name)
    run = client.create_run(client.create_experiment(name))
    for tags in ({"accuracy": "0.96"}, {"accuracy": "0.95", TAG_PREVIOUS: "1"}):
        client.create_model_version(
            name,
            source=f"{run.info.artifact_uri}/model",
            run_id=run.info.run_id,
            tags={**tags, "data_hash": "ab" * 32},
        )
    reg = MlflowRegistry(uri, mode)
    reg.set_production(name, "1")
    reg.set_production(name, "2")
    return name


@pytest.fixture(params=["alias", "stage"])
def mode(request: pytest.FixtureRequest) -> RegistryMode:
    value: RegistryMode = request.param
    return value


@pytest.fixture
def env(mlflow_server: str, mode: RegistryMode, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    return {
        **base,
        "WATCHER_MLFLOW__TRACKING_URI": mlflow_server,
        "WATCHER_MLFLOW__REGISTRY_MODE": mode,
        "WATCHER_STATE__DIR": str(tmp_path / "state"),
        "WATCHER_ALERTS__LOG": "false",
    }


def run(
    env: dict[str, str], *args: str, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WATCHER, "rollback", *args],
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_rollback_quarantine_force_and_undo(
    mlflow_server: str, mode: RegistryMode, env: dict[str, str], tmp_path: Path
) -> None:
    """Default target is the prior stable version; the bad one needs --force; --undo returns."""
    name = seed(mlflow_server, mode)
    reg = MlflowRegistry(mlflow_server, mode)

    done = run(env, "--model", name, "--yes", "--reason", "live accuracy dropped")
    assert 0 == done.returncode, done.stderr
    assert "target:  v1" in done.stdout
    assert "1" == reg.production(name)
    bad = reg.get_version(name, "2")
    assert bad is not None and bad.quarantined
    assert "live accuracy dropped" == bad.tags["watcher.rollback_reason"]
    if mode == "stage":
        assert "Archived" == bad.stage
    assert '"ModelRolledBack"' in (tmp_path / "state" / "alerts.jsonl").read_text()

    refused = run(env, "--model", name, "--to", "2", "--yes")
    assert 2 == refused.returncode
    assert "quarantined" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr

    undo = run(env, "--model", name, "--undo", "--yes")
    assert 0 == undo.returncode, undo.stderr
    assert "2" == reg.production(name)
    assert not reg.get_version(name, "2").quarantined  # type: ignore[union-attr]
    assert not reg.get_version(name, "1").quarantined  # type: ignore[union-attr]


def run_in_process(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str]:
    """`watcher rollback ARGS` through the same main() in this process (no `import mlflow`
    per call); returns the exit code and stdout + stderr. The process boundary itself
    (exit statuses, a TTY, SIGKILL) is covered by the subprocess runs."""
    with monkeypatch.context() as m:
        for key in [k for k in os.environ if k.startswith(("WATCHER_", "MLFLOW_HTTP_"))]:
            m.delenv(key)
        for key, value in env.items():
            if key.startswith("WATCHER_"):
                m.setenv(key, value)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["rollback", *args])
        # mlflow_client() exports its request budget to os.environ; the context undoes it.
        for key in [k for k in os.environ if k.startswith("MLFLOW_HTTP_")]:
            m.delenv(key)
    return code, out.getvalue() + err.getvalue()


def test_exit_codes_and_confirmation(
    mlflow_server: str,
    mode: RegistryMode,
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bad input exits 2; off a TTY it needs --yes; on one it asks; --dry-run changes nothing."""
    name = seed(mlflow_server, mode)
    reg = MlflowRegistry(mlflow_server, mode)
    cases = [
        (("--model", "no-such-model", "--yes"), "no registered model"),
        (("--model", name, "--to", "7", "--yes"), "has no version 7"),
        (("--model", name, "--to", "0", "--yes"), "not a model version"),
        (("--model", name, "--to", "2", "--yes"), "already Production"),
    ]
    for args, needle in cases:
        code, text = run_in_process(env, monkeypatch, *args)
        assert 2 == code, (args, text)
        assert needle in text, (args, text)
    result = run(env, "--model", name)  # a real process with no TTY on stdin
    assert 2 == result.returncode, result.stderr
    assert "pass --yes" in result.stderr
    code, text = run_in_process(env, monkeypatch, "--model", name, "--dry-run")
    assert 0 == code, text
    assert "would roll back" in text
    assert "2" == reg.production(name)
    assert not (tmp_path / "state" / "alerts.jsonl").exists()  # a preview notifies no one
    history = subprocess.run(
        [WATCHER, "history", "--json"], env=env, capture_output=True, text=True, check=True
    )
    assert "rollback" not in history.stdout  # … and records nothing as done

    # On a terminal it asks; answering "n" cancels (exit 2), "y" rolls back.
    for answer, code, production in (("n", 2, "2"), ("y", 0, "1")):
        leader, follower = pty.openpty()
        os.write(leader, f"{answer}\n".encode())
        result = run(env, "--model", name, stdin=follower)
        os.close(follower)
        os.close(leader)
        assert code == result.returncode, result.stdout + result.stderr
        assert "Move Production of" in result.stdout
        assert production == reg.production(name)


def test_backend_down_exit_1(env: dict[str, str]) -> None:
    """MLflow unreachable is a backend failure: exit 1, one line, no traceback."""
    env = {
        **env,
        "WATCHER_MLFLOW__TRACKING_URI": "http://127.0.0.1:9",
        "WATCHER_MLFLOW__MAX_RETRIES": "0",
    }
    result = run(env, "--model", "m", "--yes")
    assert 1 == result.returncode
    assert "Traceback" not in result.stderr
    assert 1 == len(result.stderr.strip().splitlines())


@pytest.mark.parametrize("step", ["intent", "moved", "tagged"])
def test_kill_9_after_each_step_then_restart(
    mlflow_server: str, mode: RegistryMode, env: dict[str, str], tmp_path: Path, step: str
) -> None:
    """SIGKILL after a journal step; the next run completes it: consistent, one notification."""
    name = seed(mlflow_server, mode)
    reg = MlflowRegistry(mlflow_server, mode)
    crashed = run({**env, "WATCHER_FAULT": f"rollback_after_{step}"}, "--model", name, "--yes")
    assert -9 == crashed.returncode, crashed.stderr
    assert reg.production(name) in ("1", "2")  # never without Production

    again = run(env, "--model", name, "--yes")
    assert 0 == again.returncode, again.stderr
    assert "finished an interrupted rollback" in again.stdout
    assert "1" == reg.production(name)
    assert reg.get_version(name, "2").quarantined  # type: ignore[union-attr]
    alerts = (tmp_path / "state" / "alerts.jsonl").read_text().splitlines()
    assert 1 == sum('"ModelRolledBack"' in line for line in alerts)


def test_shows_the_models_metric_over_its_window(
    mlflow_server: str,
    mode: RegistryMode,
    env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A model monitored on rmse by an override (with its own window) is shown by its
    training rmse (version tag) and live rmse over the override's window, not accuracy."""
    from datetime import UTC, datetime, timedelta

    from mlflow import MlflowClient

    from watcher.backends.mlflow_observations import report_metric

    name = seed(mlflow_server, mode)
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    client.set_model_version_tag(name, "1", "rmse", "38.5")
    client.set_model_version_tag(name, "2", "rmse", "52.0")
    reg = MlflowRegistry(mlflow_server, mode)
    now = datetime.now(UTC)
    # Window 1 (the override's) reads the newest only: 30.000, where window 5 reads 20.000.
    for minutes, value in ((3, 10.0), (2, 30.0)):
        at = now - timedelta(minutes=minutes)
        report_metric(name, "rmse", value, 100, version="2", at=at, registry=reg)
    report_metric(name, "accuracy", 0.5, 100, version="2", registry=reg)  # not the metric
    config = tmp_path / "watcher.toml"
    config.write_text(
        "[monitor]\nwindow = 5\n"
        f'[monitor.overrides."{name}"]\nmetric = "rmse"\nthreshold = 50\nwindow = 1\n'
    )
    code, text = run_in_process(
        {**env, "WATCHER_CONFIG": str(config)}, monkeypatch, "--model", name, "--dry-run"
    )
    assert 0 == code, text
    assert "current: v2, data_hash abababababab, training rmse 52.0, live rmse 30.000" in text
    assert "target:  v1, data_hash abababababab, training rmse 38.5, live rmse n/a" in text
    assert "accuracy" not in text
