"""Slack incoming webhook: one message per batch, Block Kit layout, plain `text` fallback.

The webhook URL is the credential, so it is held as a Secret and never printed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from alerts.model import Notification, NotificationKind
from alerts.notifiers._http import HttpClientOwner, make_client, post
from alerts.notifiers.base import DEFAULT_TIMEOUT_S
from alerts.redaction import SecretURL

if TYPE_CHECKING:
    import httpx

_EMOJI: Final = {
    NotificationKind.FIRING: ":rotating_light:",
    NotificationKind.REPEAT: ":rotating_light:",
    NotificationKind.RESOLVED: ":white_check_mark:",
}
_MAX_ALERTS: Final = 20  # Slack caps a message at 50 blocks; 2 per alert + header/footer


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _title(note: Notification) -> str:
    labels = note.alert.labels
    what = labels["alertname"]
    if "model" in labels:
        what += f" {labels['model']}" + (f" v{labels['version']}" if "version" in labels else "")
    prefix = {"firing": "FIRING", "repeat": "STILL FIRING", "resolved": "RESOLVED"}[note.kind]
    return f"[{prefix}] {what}"


def slack_payload(notifications: Sequence[Notification]) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    for note in notifications[:_MAX_ALERTS]:
        alert = note.alert
        summary = alert.annotations.get("summary", "")
        description = alert.annotations.get("description", "")
        text = f"{_EMOJI[note.kind]} *{_escape(_title(note))}*"
        if summary:
            text += f"\n{_escape(summary)}"
        if description:
            text += f"\n{_escape(description)}"
        runbook = alert.annotations.get("runbook_url")
        if runbook:
            text += f"\n<{runbook}|Runbook>"
        fields = [
            {"type": "mrkdwn", "text": f"*{_escape(k)}*\n{_escape(v)}"}
            for k, v in alert.labels.items()
            if k != "alertname"
        ][:10]  # Slack allows at most 10 fields per section
        section: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
        if fields:
            section["fields"] = fields
        blocks.append(section)
        when = f"started {alert.starts_at.isoformat()}"
        if alert.ends_at is not None:
            when += f", resolved {alert.ends_at.isoformat()}"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(when)}]})
    if len(notifications) > _MAX_ALERTS:
        more = len(notifications) - _MAX_ALERTS
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"…and {more} more"}]}
        )
    fallback = "; ".join(_title(n) for n in notifications)
    return {"text": fallback[:3000], "blocks": blocks}


class SlackNotifier(HttpClientOwner):
    def __init__(
        self,
        webhook_url: str,
        *,
        name: str = "slack",
        send_resolved: bool = True,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not webhook_url.startswith(("http://", "https://")):
            raise ValueError(f"slack channel {name!r}: webhook url must start with http(s)://")
        self._url = SecretURL(webhook_url)
        super().__init__(name, send_resolved)
        self._client = make_client(timeout, transport)

    def send(self, notifications: Sequence[Notification]) -> None:
        if not notifications:
            return
        body = json.dumps(slack_payload(notifications)).encode()
        post(
            self._client,
            self._name,
            self._url.reveal(),
            content=body,
            headers={"Content-Type": "application/json"},
        )

    def __repr__(self) -> str:
        return f"SlackNotifier(name={self._name!r}, webhook_url={self._url!r})"
