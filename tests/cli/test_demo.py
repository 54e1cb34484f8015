"""`watcher demo` as a user runs it: a real subprocess, real MLflow (SQLite), real pipeline runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

WATCHER = str(Path(sys.executable).parent / "watcher")
pytestmark = pytest.mark.slow


def _env(tmp: Path) -> dict[str, str]:
    """No WATCHER_*/MLflow settings leak in; temporary dirs land in ``tmp`` so we can see them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHER_", "MLFLOW_"))}
    env["MLFLOW_CONFIGURE_LOGGING"] = "false"
    env["TMPDIR"] = str(tmp)
    env["PYTHONIOENCODING"] = "utf-8"  # the story's ✓ and the status table's box lines
    return env


def _demo(cwd: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    tmp = cwd / "tmp"
    tmp.mkdir()
    return subprocess.run(
        [WATCHER, "demo", *args],
        cwd=cwd,
        env=_env(tmp),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _leftover_runs(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (the demo's dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append(cmd)
    return found


def test_demo_tells_the_whole_story(tmp_path: Path) -> None:
    """Exit 0; v1 promoted, one trigger → v2, alert → rollback to v1, status; temp dir removed."""
    result = _demo(tmp_path, timeout=280)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    expected = [
        r"step 1/4: sample data → v1 trained and promoted",
        r"✓ v1 trained and promoted to Production \(training accuracy \d+\.\d%\)",
        r"step 2/4: new data → one trigger → v2 promoted",
        r"✓ v2 trained and promoted to Production",
        r"pipeline\.promote = always",
        r"✓ exactly one trigger for the new data",
        r"step 3/4: poor live accuracy → alert → automatic rollback",
        r"✓ watcher: v2 live accuracy 55% < 85% → alert ModelAccuracyLow firing",
        r"✓ automatic rollback: Production v2 → v1, v2 quarantined",
        r"✓ notified: ModelAccuracyLow, ModelRolledBack",
        r"step 4/4: watcher status",
        r"running \(pid \d+\), healthy",
        r"iris-classifier\s*│\s*v1\s*│",  # the status table: Production is v1 again
        r"v2→v1 done",
        r"✓ demo complete in \d+ s: every step happened\.",
    ]
    at = 0
    for pattern in expected:  # in this order
        m = re.compile(pattern).search(out, at)
        assert m is not None, f"{pattern!r} not found (in order) in:\n{out}"
        at = m.end()
    root = re.search(r"demo in (\S+) \(temporary\)", out)
    assert root is not None, out
    assert not Path(root.group(1)).exists()
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not (tmp_path / "mlruns").exists()  # nothing written where it was started


def test_demo_names_the_step_that_did_not_happen(tmp_path: Path) -> None:
    """A step past its deadline: exit 1 naming it; the dir is removed and the run is stopped."""
    result = _demo(tmp_path, "--step-timeout", "1", timeout=200)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "✗ demo step 1 (sample data → v1 trained and promoted)" in result.stdout
    assert "did not happen within 1 s" in result.stdout
    assert result.stderr.strip().startswith("error: demo step 1 ")
    assert list((tmp_path / "tmp").iterdir()) == []
    assert _leftover_runs(str(tmp_path / "tmp")) == []


def test_dir_must_be_new_or_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dir on a non-empty dir is bad input (exit 2) and leaves its contents alone."""
    from watcher.cli.main import main

    (tmp_path / "precious.txt").write_text("keep me", encoding="utf-8")
    assert main(["demo", "--dir", str(tmp_path)]) == 2
    assert "must be an empty or new directory" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["precious.txt"]


def test_help_stays_light() -> None:
    """Registering `demo` keeps `watcher --help` free of mlflow and sklearn imports."""
    code = (
        "import sys\nfrom watcher.cli.main import main\nmain(['--help'])\n"
        "print('heavy:', sorted(m for m in ('mlflow', 'sklearn') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "demo" in result.stdout
    assert "heavy: []" in result.stdout
