"""A template unit instance (WATCHER_INSTANCE set) watches its own model by default."""

from __future__ import annotations

from pathlib import Path

from watcher.config import INSTANCE_ENV, load_config

INSTANCE = {INSTANCE_ENV: "fraud"}


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fraud.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_instance_defaults_monitor_models_to_its_own_model(tmp_path: Path) -> None:
    """No monitor.models: the instance's pipeline.model_name (not every model, "*")."""
    path = _config(tmp_path, "[pipeline]\nmodel_name = 'fraud-detector'\n")
    assert ["fraud-detector"] == load_config(path, env=INSTANCE).monitor.models
    assert ["*"] == load_config(path, env={}).monitor.models


def test_instance_default_follows_the_model_name_default_and_env() -> None:
    """The embedded model name, or one given by env, is the default too."""
    assert ["iris-classifier"] == load_config(env=INSTANCE).monitor.models
    env = {**INSTANCE, "WATCHER_PIPELINE__MODEL_NAME": "churn"}
    assert ["churn"] == load_config(env=env).monitor.models


def test_explicit_monitor_models_wins(tmp_path: Path) -> None:
    """monitor.models given in the file, by env or on the command line is kept as is,
    "*" included."""
    path = _config(
        tmp_path, "[pipeline]\nmodel_name = 'fraud-detector'\n[monitor]\nmodels = ['*']\n"
    )
    assert ["*"] == load_config(path, env=INSTANCE).monitor.models
    env = {**INSTANCE, "WATCHER_MONITOR__MODELS": "fraud-*, shared"}
    assert ["fraud-*", "shared"] == load_config(env=env).monitor.models
    flag = load_config(env=INSTANCE, overrides={"monitor.models": ["a"]})
    assert ["a"] == flag.monitor.models


def test_empty_instance_name_is_no_instance() -> None:
    """An empty WATCHER_INSTANCE (a unit without %i) changes nothing."""
    assert ["*"] == load_config(env={INSTANCE_ENV: ""}).monitor.models
