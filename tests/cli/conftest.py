"""Every CLI test runs in its own empty dir with no ``WATCHER_*`` env from the caller."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WATCHER_"):
            monkeypatch.delenv(name)
