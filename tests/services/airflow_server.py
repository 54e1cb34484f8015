"""Session fixture for a real airflow_server (filled in by its owner)."""

from __future__ import annotations
