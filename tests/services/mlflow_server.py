"""Session fixture for a real mlflow_server (filled in by its owner)."""

from __future__ import annotations
