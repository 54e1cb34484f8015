"""Push alerts to a Prometheus Alertmanager through ``POST /api/v2/alerts``.

Like Prometheus, we send firing alerts without ``endsAt`` and re-send them every
``resend_interval`` (the dispatcher does that) so Alertmanager's
``resolve_timeout`` never expires them; a resolve carries ``endsAt``.

Info events (``severity="info"``: a version registered, a new Production) are
not alerts: Alertmanager would show them as active until ``resolve_timeout``,
so this channel leaves them out. They reach the chat, webhook, email, file and
log channels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from alerts.model import Notification, NotificationKind
from alerts.notifiers._http import HttpClientOwner, make_client, post
from alerts.notifiers.base import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    import httpx


INFO_SEVERITY = "info"


def alertmanager_payload(notifications: Sequence[Notification]) -> list[dict[str, Any]]:
    payload: list[dict[str, Any]] = []
    for note in notifications:
        alert = note.alert
        if alert.labels.get("severity") == INFO_SEVERITY:
            continue
        item: dict[str, Any] = {
            "labels": dict(alert.labels),
            "annotations": dict(alert.annotations),
            "startsAt": alert.starts_at.isoformat(),
        }
        if note.kind is NotificationKind.RESOLVED and alert.ends_at is not None:
            item["endsAt"] = alert.ends_at.isoformat()
        if alert.generator_url:  # the API validates it as a URI: omit when empty
            item["generatorURL"] = alert.generator_url
        payload.append(item)
    return payload


class AlertmanagerNotifier(HttpClientOwner):
    """Channel backed by an Alertmanager's v2 API."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "alertmanager",
        send_resolved: bool = True,
        resend_interval: timedelta = timedelta(minutes=1),
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"alertmanager channel {name!r}: url must start with http(s)://")
        self._endpoint = url.rstrip("/") + "/api/v2/alerts"
        super().__init__(name, send_resolved)
        self._resend_interval = resend_interval
        self._client = make_client(timeout, transport)

    @property
    def resend_interval(self) -> timedelta:
        return self._resend_interval

    def send(self, notifications: Sequence[Notification]) -> None:
        payload = alertmanager_payload(notifications)
        if not payload:
            return  # only info events: nothing for Alertmanager, and delivered as such
        body = json.dumps(payload).encode()
        post(
            self._client,
            self._name,
            self._endpoint,
            content=body,
            headers={"Content-Type": "application/json"},
        )

    def __repr__(self) -> str:
        return f"AlertmanagerNotifier(name={self._name!r}, endpoint={self._endpoint!r})"
