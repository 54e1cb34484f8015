"""watcher/extras.py: which settings need the [pipeline] extra (tests/lean runs a real
lean venv; here the rules, on this full venv with the extra's absence simulated)."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher import extras
from watcher.config import Config, load_config
from watcher.errors import ConfigError


def _config(tmp_path: Path, toml: str, **env: str) -> Config:
    path = tmp_path / "watcher.toml"
    path.write_text(f'[state]\ndir = "{tmp_path / "state"}"\n{toml}')
    return load_config(path, env=env)


def test_this_venv_has_the_extra() -> None:
    assert extras.pipeline_installed()


@pytest.mark.parametrize(
    ("uri", "needs"),
    [
        ("http://127.0.0.1:5000", []),
        ("https://mlflow.example", []),
        ("databricks", []),
        ("sqlite:////tmp/m.db", ["mlflow.tracking_uri: a sqlite: store"]),
        ("postgresql+psycopg://u@db/m", ["mlflow.tracking_uri: a postgresql+psycopg: store"]),
    ],
)
def test_database_stores_need_full_mlflow(tmp_path: Path, uri: str, needs: list[str]) -> None:
    config = _config(tmp_path, f'[mlflow]\ntracking_uri = "{uri}"\n')
    assert needs == extras.store_needs(config)


def test_daemon_needs_name_each_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = _config(
        tmp_path,
        f'[monitor]\nfeedback_dir = "{tmp_path / "fb"}"\n[drift]\np_value = 0.01\nalert = false\n',
    )
    needs = extras.daemon_needs(config)
    assert [
        "mlflow.tracking_uri (unset): the embedded SQLite store",
        'trigger.backend = "local": training (scikit-learn)',
        "monitor.feedback_dir: the evaluator (scikit-learn, pandas)",
        "drift.alert, drift.p_value: drift checks (pandas, scipy)",
    ] == needs
    lean = _config(
        tmp_path,
        '[mlflow]\ntracking_uri = "http://mlflow:5000"\n'
        '[trigger]\nbackend = "command"\ncommand = ["true"]\n',
    )
    assert [] == extras.daemon_needs(lean)


def test_require_refuses_only_without_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    extras.require(["trigger.backend: x"])  # installed here: nothing to refuse
    monkeypatch.setattr(extras, "pipeline_installed", lambda: False)
    extras.require([])
    with pytest.raises(ConfigError) as caught:
        extras.require(["trigger.backend: x", "monitor.feedback_dir: y"])
    assert 2 == caught.value.exit_code
    assert [
        "trigger.backend: x needs the [pipeline] extra (pip install 'registry-watcher[pipeline]')",
        "monitor.feedback_dir: y needs the [pipeline] extra (pip install "
        "'registry-watcher[pipeline]')",
    ] == caught.value.errors
