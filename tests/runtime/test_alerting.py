"""The daemon's alerting component: channels from config, lifecycle, delivery on tick."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from alerts import make_alert
from watcher.config import load_config
from watcher.runtime.alerting import Alerting, build_notifiers
from watcher.runtime.clock import SystemClock
from watcher.runtime.state import open_state


def test_channels_from_config(tmp_path: Path) -> None:
    """Log and file are on by default; others appear when configured (secrets from env)."""
    base = {"WATCHER_STATE__DIR": str(tmp_path)}
    assert ["log", "file"] == [n.name for n in build_notifiers(load_config(env=base))]
    cfg = load_config(
        env={
            **base,
            "WATCHER_ALERTS__ALERTMANAGER__URL": "http://127.0.0.1:9093",
            "WATCHER_ALERTS__WEBHOOK__URL": "http://127.0.0.1:9/hook",
            "WATCHER_ALERTS__SLACK__WEBHOOK_URL": "https://hooks.example/T/B/X",
            "WATCHER_ALERTS__EMAIL__HOST": "127.0.0.1",
            "WATCHER_ALERTS__EMAIL__TO": "ops@example.org",
            "WATCHER_ALERTS__LOG": "false",
        }
    )
    names = [n.name for n in build_notifiers(cfg)]
    assert ["file", "alertmanager", "webhook", "slack", "email"] == names


def test_firing_then_resolved_reach_the_file(tmp_path: Path) -> None:
    """An alert set through evaluate() is delivered once on tick, then resolved once."""
    cfg = load_config(env={"WATCHER_STATE__DIR": str(tmp_path), "WATCHER_ALERTS__LOG": "false"})
    state = open_state(tmp_path)
    alerting = Alerting(cfg, state, SystemClock())
    alert = make_alert("ModelAccuracyLow", starts_at=datetime.now(UTC), model="iris", version="2")
    assert 1 == len(alerting.evaluate("policy", [alert]))
    assert [] == alerting.evaluate("policy", [alert])  # still firing: no new notification
    alerting.tick()
    alerting._next = 0.0
    assert 1 == len(alerting.evaluate("policy", []))
    alerting.tick()
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert ["firing", "resolved"] == [line["kind"] for line in lines]
    assert alerting.health().ok
    alerting.stop()
    state.close()
