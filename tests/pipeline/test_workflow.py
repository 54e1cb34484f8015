"""The train_and_validate workflow: valid YAML with the promised steps, and its train and
gate steps run locally, in order, with the same commands."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.pipeline.conftest import REPO


def test_workflow_steps() -> None:
    """On push: install uv, sync, test, train on examples/data with SQLite MLflow, then gate."""
    doc = yaml.safe_load((REPO / ".github/workflows/train_and_validate.yml").read_text())
    # YAML 1.1 reads the bare key `on` as True.
    triggers = doc.get("on", doc.get(True))
    assert "push" in triggers
    (job,) = doc["jobs"].values()
    assert job["env"]["MLFLOW_TRACKING_URI"].startswith("sqlite:///")
    steps = job["steps"]
    uses = [s.get("uses", "") for s in steps]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert any(u.startswith("astral-sh/setup-uv") for u in uses)
    order = [
        runs.index("uv sync"),
        runs.index("uv run pytest"),
        runs.index("python -m pipeline.run --data-dir examples/data"),
        runs.index("python -m pipeline.validate"),
    ]
    assert sorted(order) == order
    assert "--threshold" in runs.split("pipeline.validate", 1)[1]


def _steps(names: tuple[str, ...]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """The job env and the (name, run) of the named steps, in the workflow's order."""
    doc = yaml.safe_load((REPO / ".github/workflows/train_and_validate.yml").read_text())
    (job,) = doc["jobs"].values()
    steps = [(s["name"], s["run"]) for s in job["steps"] if s.get("name") in names]
    assert [n for n, _ in steps] == list(names), "the workflow's steps were renamed or reordered"
    return dict(job["env"]), steps


def _run_steps(workspace: Path, threshold: str | None = None) -> list[int]:
    """Run the train and gate steps' shell exactly as written, in order, in ``workspace``
    (a copy of examples/ as the checkout), as GitHub would: `bash -e`, the job env with
    `${{ github.workspace }}` filled in. `uv` is a shim for `uv run CMD` → CMD in this
    suite's already-synced venv. Returns each step's exit code, stopping at a failure."""
    env_doc, steps = _steps(("Train on examples/data", "Quality gate"))
    shim = workspace / ".bin"
    shim.mkdir()
    (shim / "uv").write_text('#!/bin/sh\n[ "$1" = run ] || exit 64\nshift\nexec "$@"\n')
    (shim / "uv").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WATCHER_"))}
    env |= {k: v.replace("${{ github.workspace }}", str(workspace)) for k, v in env_doc.items()}
    if threshold is not None:
        env["GATE_THRESHOLD"] = threshold
    env["PATH"] = f"{shim}:{Path(sys.executable).parent}:{env['PATH']}"
    env["PYTHONPATH"] = str(REPO)
    codes = []
    for _, script in steps:
        done = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=workspace,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        codes.append(done.returncode)
        if done.returncode != 0:
            print(f"step exit {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
            break
    return codes


@pytest.mark.slow
def test_train_and_gate_steps_run_locally_and_gate_on_the_threshold(tmp_path: Path) -> None:
    """The workflow's own commands, in order: green at its threshold (0.9) on the sample
    data; the gate step fails (exit 1) when the model is below the threshold."""
    good = tmp_path / "good"
    shutil.copytree(REPO / "examples", good / "examples")
    assert [0, 0] == _run_steps(good)
    assert (good / "ci-mlflow" / "mlflow.db").is_file()

    # Labels shuffled: the model cannot reach 0.9; training still succeeds, the gate fails.
    bad = tmp_path / "bad"
    shutil.copytree(REPO / "examples", bad / "examples")
    csv = bad / "examples" / "data" / "iris.csv"
    header, *rows = csv.read_text().splitlines()
    labels = [r.rsplit(",", 1)[1] for r in rows]
    random.Random(14).shuffle(labels)
    rows = [f"{r.rsplit(',', 1)[0]},{y}" for r, y in zip(rows, labels, strict=True)]
    csv.write_text("\n".join([header, *rows]) + "\n")
    assert [0, 1] == _run_steps(bad)
