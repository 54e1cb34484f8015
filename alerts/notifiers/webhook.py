"""Generic webhook speaking Alertmanager's webhook v4 body, optionally HMAC-signed.

Signature: ``X-Watcher-Signature: sha256=<hex>`` where hex is
HMAC-SHA256(secret, f"{timestamp}.".encode() + body) and ``X-Watcher-Timestamp``
carries the Unix timestamp (seconds). Receivers check it with
:func:`verify_signature`, which also bounds the timestamp's age (5 minutes by default)
against replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from alerts.model import AlertStatus, Notification
from alerts.notifiers._http import HttpClientOwner, make_client, post
from alerts.notifiers.base import DEFAULT_TIMEOUT_S
from alerts.redaction import Secret, SecretURL

if TYPE_CHECKING:
    import httpx

SIGNATURE_HEADER: Final = "X-Watcher-Signature"
TIMESTAMP_HEADER: Final = "X-Watcher-Timestamp"
# Alertmanager renders "no end yet" as Go's zero time.
_ZERO_TIME: Final = "0001-01-01T00:00:00Z"
# Replay window of verify_signature: a signed request older (or newer) than this is refused.
DEFAULT_TOLERANCE_S: Final = 300.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    max_age_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True if ``header`` is the signature of ``body`` at ``timestamp`` (constant time)
    and ``timestamp`` is within ``max_age_s`` of ``now`` (default: the current time), so
    a captured request cannot be replayed later. Garbage (a non-numeric, non-finite or
    non-ASCII timestamp, a non-ASCII or non-string header) is False, never an exception:
    both come straight from a request."""
    try:
        if not (timestamp.isascii() and header.isascii()):
            return False
        sent = float(timestamp)
        current = time.time() if now is None else now
        if not math.isfinite(sent) or not abs(current - sent) <= max_age_s:
            return False
        return hmac.compare_digest(sign(secret, timestamp, body), header)
    except (TypeError, ValueError, AttributeError):
        return False


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in sorted(first.items()) if all(m.get(k) == v for m in maps[1:])}


def webhook_payload(
    notifications: Sequence[Notification], *, receiver: str, external_url: str = ""
) -> dict[str, Any]:
    """Alertmanager webhook v4 body for a batch of notifications."""
    alerts: list[dict[str, Any]] = []
    for note in notifications:
        alert = note.alert
        alerts.append(
            {
                "status": note.status.value,
                "labels": dict(alert.labels),
                "annotations": dict(alert.annotations),
                "startsAt": alert.starts_at.isoformat(),
                "endsAt": alert.ends_at.isoformat() if alert.ends_at else _ZERO_TIME,
                "generatorURL": alert.generator_url,
                "fingerprint": alert.fingerprint,
            }
        )
    common_labels = _common([a["labels"] for a in alerts])
    group_labels = {k: v for k, v in common_labels.items() if k == "alertname"}
    firing = any(a["status"] == AlertStatus.FIRING.value for a in alerts)
    group_key = "{}:{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in group_labels.items()) + "}"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": AlertStatus.FIRING.value if firing else AlertStatus.RESOLVED.value,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common_labels,
        "commonAnnotations": _common([a["annotations"] for a in alerts]),
        "externalURL": external_url,
        "alerts": alerts,
    }


class WebhookNotifier(HttpClientOwner):
    """POSTs the v4 body to a URL (treated as a secret: it often embeds a token)."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "webhook",
        hmac_secret: str | None = None,
        send_resolved: bool = True,
        external_url: str = "",
        timeout: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook channel {name!r}: url must start with http(s)://")
        self._url = SecretURL(url)
        self._secret = Secret(hmac_secret) if hmac_secret else None
        super().__init__(name, send_resolved)
        self._external_url = external_url
        self._clock = clock
        self._client = make_client(timeout, transport)

    def send(self, notifications: Sequence[Notification]) -> None:
        if not notifications:
            return
        payload = webhook_payload(
            notifications, receiver=self._name, external_url=self._external_url
        )
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "registry-watcher"}
        if self._secret is not None:
            timestamp = str(int(self._clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = sign(self._secret.reveal(), timestamp, body)
        post(self._client, self._name, self._url.reveal(), content=body, headers=headers)

    def __repr__(self) -> str:
        signed = self._secret is not None
        return f"WebhookNotifier(name={self._name!r}, url={self._url!r}, signed={signed})"
