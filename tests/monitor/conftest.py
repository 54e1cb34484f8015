"""Shared pieces for monitor tests: a state DB, real alerting writing JSONL channels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from alerts import Dispatcher
from alerts.notifiers.file import FileNotifier
from tests.runtime.conftest import notify_socket  # noqa: F401  (a real `watcher run`'s socket)
from watcher.config import Config
from watcher.runtime.alerting import Alerting
from watcher.runtime.state import StateStore
from watcher.testing import FakeClock

CHANNELS = ("ops", "audit")


@dataclass
class Channels:
    """Two real file channels and the alerting (the components' AlertSink) that feeds them."""

    alerting: Alerting
    dir: Path

    @property
    def dispatcher(self) -> Dispatcher:
        return self.alerting.dispatcher

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
def channels(state: StateStore, clock: FakeClock, tmp_path: Path) -> Channels:
    out = tmp_path / "channels"
    out.mkdir()
    notifiers = [FileNotifier(out / f"{name}.jsonl", name=name) for name in CHANNELS]
    config = Config.model_validate({"alerts": {"repeat_interval": "4h"}})
    return Channels(Alerting(config, state, clock, notifiers=notifiers), out)
