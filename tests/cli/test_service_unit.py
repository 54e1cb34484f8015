"""`watcher service-unit`: the repo copy, `systemd-analyze verify` and `security` on the output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from watcher.cli.main import main
from watcher.cli.service_unit import DEFAULT_EXEC, INSTANCE_ENV, TEMPLATE_NAME, UNIT_NAME
from watcher.config import load_config

REPO = Path(__file__).resolve().parents[2]
WATCHER = str(Path(sys.executable).parent / "watcher")
MAX_EXPOSURE = 3.0


def _unit(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert 0 == main(["service-unit", *args])
    return capsys.readouterr().out


def _analyze(tmp_path: Path, *args: str, user: bool = False) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if user:
        # The user manager wants a runtime dir even offline.
        runtime = tmp_path / "runtime"
        runtime.mkdir(exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
    return subprocess.run(
        ["systemd-analyze", *(["--user"] if user else []), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def _write(tmp_path: Path, text: str, name: str = UNIT_NAME) -> Path:
    # verify checks that ExecStart's binary exists: point it at this venv's watcher.
    path = tmp_path / name
    path.write_text(text.replace(f"ExecStart={DEFAULT_EXEC}", f"ExecStart={WATCHER}"), "utf-8")
    return path


def test_repo_copy_matches_default_output(capsys: pytest.CaptureFixture[str]) -> None:
    """systemd/registry-watcher.service is exactly what `watcher service-unit` prints,
    systemd/registry-watcher@.service what `--template` prints."""
    assert (REPO / "systemd" / UNIT_NAME).read_text(encoding="utf-8") == _unit(capsys)
    template = (REPO / "systemd" / TEMPLATE_NAME).read_text(encoding="utf-8")
    assert template == _unit(capsys, "--template")


def test_system_unit_verifies_and_scores_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The system unit: the required keys, no verify warnings, exposure ≤ 3.0."""
    text = _unit(capsys)
    for key in (
        "Type=notify",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "StateDirectory=registry-watcher",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "Restart=on-failure",
        "RestartPreventExitStatus=2",
        "WatchdogSec=",
        "ReadWritePaths=",
        "LoadCredential=",
    ):
        assert key in text, key
    unit = _write(tmp_path, text)
    verify = _analyze(tmp_path, "verify", str(unit))
    assert 0 == verify.returncode, verify.stderr
    assert "" == verify.stderr.strip() + verify.stdout.strip()
    security = _analyze(tmp_path, "security", "--offline=true", str(unit))
    line = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert line is not None, security.stdout + security.stderr
    assert float(line.group(1)) <= MAX_EXPOSURE, security.stdout


def test_config_shapes_unit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--config: ExecStart passes it, absolute dirs become ReadWritePaths, secrets credentials."""
    cfg = tmp_path / "watcher.toml"
    cfg.write_text(
        "[watch]\ndata_dir = '/srv/training-data'\nsnapshot_dir = '/srv/snapshots'\n"
        "[trigger.airflow]\npassword_file = 'airflow-password'\n"
        "[alerts.slack]\nwebhook_url_file = '/etc/rw/slack-url'\n",
        encoding="utf-8",
    )
    text = _unit(capsys, "--config", str(cfg), "--exec", WATCHER)
    assert f"ExecStart={WATCHER} --config {cfg.resolve()} run" in text
    assert "ReadWritePaths=-/srv/training-data" in text
    assert "ReadWritePaths=-/srv/snapshots" in text
    assert (
        "LoadCredential=airflow-password:/etc/registry-watcher/credentials/airflow-password" in text
    )
    assert "alerts.slack.webhook_url_file = /etc/rw/slack-url is a path" in text
    unit = _write(tmp_path, text)
    verify = _analyze(tmp_path, "verify", str(unit))
    assert 0 == verify.returncode, verify.stderr
    assert "" == verify.stderr.strip()


def test_user_unit_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--user: no DynamicUser, default.target, and `systemd-analyze --user verify` is clean."""
    text = _unit(capsys, "--user", "--exec", WATCHER)
    assert "DynamicUser" not in text
    assert "WantedBy=default.target" in text
    unit = _write(tmp_path, text)
    verify = _analyze(tmp_path, "verify", str(unit), user=True)
    assert 0 == verify.returncode, verify.stderr
    assert "" == verify.stderr.strip()


def test_template_instance_verifies_and_scores_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--template: instance `demo` reads /etc/registry-watcher/demo.toml with its own state
    dir; `systemd-analyze verify registry-watcher@demo.service` is clean, exposure <= 3.0."""
    text = _unit(capsys, "--template")
    for line in (
        f"ExecStart={DEFAULT_EXEC} --config /etc/registry-watcher/%i.toml run",
        "StateDirectory=registry-watcher/%i",
        "WorkingDirectory=%S/registry-watcher/%i",
        "ReadWritePaths=-%S/registry-watcher/%i/data",
        f"Environment={INSTANCE_ENV}=%i",
        "DynamicUser=yes",
    ):
        assert line in text.splitlines(), line
    _write(tmp_path, text, TEMPLATE_NAME)
    instance = str(tmp_path / "registry-watcher@demo.service")
    verify = _analyze(tmp_path, "verify", instance)
    assert 0 == verify.returncode, verify.stderr
    assert "" == verify.stderr.strip() + verify.stdout.strip()
    security = _analyze(tmp_path, "security", "--offline=true", instance)
    score = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert score is not None, security.stdout + security.stderr
    assert float(score.group(1)) <= MAX_EXPOSURE, security.stdout


def test_user_template_instance_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--user --template: the instance's config is under %E (~/.config); verify is clean."""
    text = _unit(capsys, "--user", "--template", "--exec", WATCHER)
    assert f"ExecStart={WATCHER} --config %E/registry-watcher/%i.toml run" in text
    _write(tmp_path, text, TEMPLATE_NAME)
    verify = _analyze(
        tmp_path, "verify", str(tmp_path / "registry-watcher@demo.service"), user=True
    )
    assert 0 == verify.returncode, verify.stderr
    assert "" == verify.stderr.strip()


def test_template_environment_scopes_monitor_to_the_instance_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The template's Environment= line is what watcher.config reads: under it, an instance
    config without monitor.models watches only its own pipeline.model_name."""
    text = _unit(capsys, "--template")
    setting = next(ln for ln in text.splitlines() if ln.startswith("Environment="))
    name, _, value = setting.removeprefix("Environment=").partition("=")
    cfg = tmp_path / "demo.toml"
    cfg.write_text("[pipeline]\nmodel_name = 'fraud'\n", encoding="utf-8")
    env = {name: value.replace("%i", "demo")}
    assert ["fraud"] == load_config(cfg, env=env).monitor.models
    assert ["*"] == load_config(cfg, env={}).monitor.models


def test_bad_input_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A relative --exec or an unreadable/invalid config is bad input (exit 2)."""
    assert 2 == main(["service-unit", "--exec", "watcher"])
    assert 2 == main(["service-unit", "--template", "--config", str(tmp_path / "a.toml")])
    assert "--template: each instance reads" in capsys.readouterr().err
    assert 2 == main(["service-unit", "--config", str(tmp_path / "missing.toml")])
    bad = tmp_path / "bad.toml"
    bad.write_text("[watch\n", encoding="utf-8")
    assert 2 == main(["service-unit", "--config", str(bad)])
    assert "bad.toml: invalid TOML" in capsys.readouterr().err
