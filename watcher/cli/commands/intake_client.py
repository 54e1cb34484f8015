"""``report-accuracy --via-daemon``: post a checked report to the running daemon's intake.

No MLflow on this path: the daemon resolves the version against its own last poll.
Exit 2 for what the daemon refuses (a bad field, named as the CLI's option; a wrong
token), 1 when it is unreachable or fails (5xx), naming the URL, never the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from watcher.errors import BackendError, UsageError

if TYPE_CHECKING:
    from watcher.config import Config
    from watcher.monitor.reports import Report

TIMEOUT = 10.0  # seconds: connect, write and read; the daemon commits one row then answers
PATH = "/v1/accuracy"


@dataclass(frozen=True, slots=True)
class Posted:
    id: int
    version: str
    metric: str
    value: float
    samples: int
    at: datetime


def intake_url(listen: str) -> str:
    """The URL a local client reaches ``http.listen`` at (a wildcard bind → loopback)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{PATH}"


def post_report(config: Config, report: Report, names: Mapping[str, str]) -> Posted:
    http = config.http
    if not http.listen or http.token is None:
        raise UsageError(
            "--via-daemon: set http.listen and http.token as the daemon has them "
            "(its intake is served only with both)"
        )
    import httpx

    url = intake_url(http.listen)
    body: dict[str, Any] = {
        "model": report.model,
        "metric": report.metric,
        "value": report.value,
        "samples": report.samples,
    }
    if report.version is not None:
        body["version"] = report.version
    if report.at is not None:
        body["at"] = report.at.isoformat()
    headers = {"Authorization": f"Bearer {http.token.get_secret_value()}"}
    try:
        resp = httpx.post(url, json=body, headers=headers, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        raise BackendError(f"the daemon at {url} is unreachable: {type(exc).__name__}") from None
    return _answer(url, resp.status_code, _json(resp.content), names)


def _json(content: bytes) -> dict[str, Any]:
    import json

    try:
        doc = json.loads(content)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _answer(url: str, status: int, doc: Mapping[str, Any], names: Mapping[str, str]) -> Posted:
    message = str(doc.get("error", "")) or f"HTTP {status}"
    if status == 202:
        try:
            return Posted(
                int(doc["id"]),
                str(doc["version"]),
                str(doc["metric"]),
                float(doc["value"]),
                int(doc["samples"]),
                datetime.fromisoformat(str(doc["at"])),
            )
        except (KeyError, TypeError, ValueError):
            raise BackendError(f"the daemon at {url} answered 202 without a report") from None
    if status == 401:
        raise UsageError(f"the daemon at {url} refused http.token (401): use the daemon's token")
    field = doc.get("field")
    if 400 <= status < 500 and isinstance(field, str):
        detail = message.removeprefix(f"{field}: ")
        raise UsageError(f"{names.get(field, field)}: {detail} (the daemon at {url})")
    if status == 404:
        raise UsageError(f"the daemon at {url} serves no intake (404): is http.token set for it?")
    if 400 <= status < 500:
        raise UsageError(f"the daemon at {url} refused the report ({status}): {message}")
    raise BackendError(f"the daemon at {url} failed ({status}): {message}")
