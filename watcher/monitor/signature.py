"""MLflow webhook deliveries, checked without I/O: signature, timestamp, payload.

MLflow (mlflow/webhooks/delivery.py) signs ``{delivery_id}.{timestamp}.{body}`` with
HMAC-SHA256 and sends ``X-MLflow-Signature: v1,<base64>``, ``X-MLflow-Timestamp`` (Unix
seconds) and ``X-MLflow-Delivery-Id`` (a UUID). The body is
``{"entity", "action", "timestamp", "data": {"name", ...}}``. The signature is checked
first, so an unsigned request learns nothing about which of its other fields is wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_HEADER = "x-mlflow-delivery-id"
SIGNATURE_VERSION = "v1"
MAX_DELIVERY_ID = 128  # MLflow sends a 36-character UUID
MAX_SIGNATURES = 8  # space-separated "v1,…" entries (Standard Webhooks allows several)
# What MLflow's test_webhook sends for this event (mlflow/webhooks/types.py examples): the
# self-test's delivery proves the path works and is about no model of ours.
TEST_EVENT = "model_version_alias.created"
TEST_DATA = {"name": "example_model", "alias": "example_alias", "version": "1"}


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified delivery: who it is about and what happened."""

    delivery_id: str
    timestamp: int
    event: str  # "model_version_alias.created"
    model: str | None  # data.name (None when the payload has no name)
    test: bool = False  # MLflow's test payload (test_webhook)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a delivery is refused: the HTTP status and a message naming the header/field."""

    status: int
    message: str


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends for this delivery."""
    signed = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def _signature_matches(secret: str, header: str, delivery_id: str, ts: str, body: bytes) -> bool:
    expected = base64.b64decode(sign(secret, delivery_id, ts, body).split(",", 1)[1])
    for entry in header.split()[:MAX_SIGNATURES]:
        version, _, value = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(given, expected):
            return True
    return False


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance: float
) -> Delivery | Refusal:
    """The delivery, or why it is refused: 401 unsigned or badly signed, 400 a header or
    the payload malformed or the timestamp outside ``now ± tolerance`` seconds."""
    signature = headers.get(SIGNATURE_HEADER)
    if not signature:
        return Refusal(401, "X-MLflow-Signature missing")
    delivery_id = headers.get(DELIVERY_HEADER, "")
    if not delivery_id or len(delivery_id) > MAX_DELIVERY_ID or not delivery_id.isprintable():
        return Refusal(400, "X-MLflow-Delivery-Id missing or malformed")
    ts = headers.get(TIMESTAMP_HEADER, "")
    if not ts:
        return Refusal(400, "X-MLflow-Timestamp missing")
    if not _signature_matches(secret, signature, delivery_id, ts, body):
        return Refusal(401, "X-MLflow-Signature does not match")
    if not ts.isdigit() or len(ts) > 12:
        return Refusal(400, "X-MLflow-Timestamp is not Unix seconds")
    skew = int(ts) - now
    if abs(skew) > tolerance:
        when = "in the future" if skew > 0 else "old"
        return Refusal(
            400, f"X-MLflow-Timestamp is {abs(skew):.0f}s {when} (tolerance {tolerance:g}s)"
        )
    return _payload(delivery_id, int(ts), body)


def _payload(delivery_id: str, ts: int, body: bytes) -> Delivery | Refusal:
    try:
        doc: Any = json.loads(body)
    except (ValueError, RecursionError):
        return Refusal(400, "body is not JSON")
    if not isinstance(doc, dict):
        return Refusal(400, "body is not a JSON object")
    entity, action = doc.get("entity"), doc.get("action")
    if not isinstance(entity, str) or not isinstance(action, str):
        return Refusal(400, "entity/action missing")
    data = doc.get("data")
    if not isinstance(data, dict):
        return Refusal(400, "data is not an object")
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        return Refusal(400, "data.name is not a string")
    event = f"{entity}.{action}"
    test = event == TEST_EVENT and data == TEST_DATA
    return Delivery(delivery_id, ts, event, name or None, test)
