"""The train_and_validate workflow is valid YAML and has the promised steps."""

from __future__ import annotations

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
