"""Shared pieces for monitor tests: a state DB, a real dispatcher writing JSONL channels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from alerts import AlertStore, Dispatcher
from alerts.notifiers.file import FileNotifier
from watcher.runtime.state import StateStore

CHANNELS = ("ops", "audit")


@dataclass
class Channels:
    """Two real file channels and the dispatcher that feeds them."""

    dispatcher: Dispatcher
    dir: Path

    def sent(self, channel: str, alertname: str | None = None) -> list[str]:
        """Notification kinds delivered to ``channel`` (optionally for one alertname)."""
        path = self.dir / f"{channel}.jsonl"
        if not path.exists():
            return []
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return [
            r["kind"] for r in rows if alertname is None or r["labels"]["alertname"] == alertname
        ]

    def summaries(self, channel: str) -> list[str]:
        path = self.dir / f"{channel}.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [r["annotations"].get("summary", "") for r in rows]


@pytest.fixture
def channels(state: StateStore, tmp_path: Path) -> Channels:
    out = tmp_path / "channels"
    out.mkdir()
    notifiers = [FileNotifier(out / f"{name}.jsonl", name=name) for name in CHANNELS]
    dispatcher = Dispatcher(AlertStore(state.conn), notifiers, repeat_interval=timedelta(hours=4))
    return Channels(dispatcher, out)
