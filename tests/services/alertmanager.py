"""Session fixture for a real alertmanager (filled in by its owner)."""

from __future__ import annotations
