"""The [drift] config section: defaults, overrides, validation, and its DriftOptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcher.config import load_config
from watcher.drift.check import drift_options
from watcher.drift.stats import DriftOptions
from watcher.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_local_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./watcher.toml sneaking in


def test_defaults_match_the_documented_policy() -> None:
    """alert on, 50% of columns, auto method, p < 0.05, distance/PSI >= 0.1."""
    cfg = load_config(None, env={})
    assert (True, 0.5, "auto", 0.05, 0.1) == (
        cfg.drift.alert,
        cfg.drift.drift_share,
        cfg.drift.method,
        cfg.drift.p_value,
        cfg.drift.threshold,
    )
    assert DriftOptions() == drift_options(cfg.drift)


def test_file_and_env_override(tmp_path: Path) -> None:
    """Keys come from the TOML [drift] table, env vars win."""
    path = tmp_path / "w.toml"
    path.write_text('[drift]\nmethod = "psi"\nthreshold = 0.25\nalert = false\n', encoding="utf-8")
    cfg = load_config(path, env={"WATCHER_DRIFT__DRIFT_SHARE": "0.3"})
    assert DriftOptions(method="psi", threshold=0.25, drift_share=0.3) == drift_options(cfg.drift)
    assert cfg.drift.alert is False


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WATCHER_DRIFT__DRIFT_SHARE": "0"}, "drift.drift_share: Input should be greater than 0"),
        ({"WATCHER_DRIFT__METHOD": "ks"}, "drift.method: Input should be 'auto' or 'psi'"),
        ({"WATCHER_DRIFT__P_VALUE": "1"}, "drift.p_value: Input should be less than 1"),
        ({"WATCHER_DRIFT__BINS": "3"}, "drift.bins: unknown key"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], message: str) -> None:
    """Validation errors name drift.<key> and where the value came from."""
    with pytest.raises(ConfigError) as info:
        load_config(None, env=env)
    assert any(line.startswith(message) for line in info.value.errors), info.value.errors
