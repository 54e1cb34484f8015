"""``report-accuracy --via-daemon``: post a checked report to the running daemon's intake.

No MLflow on this path: the daemon resolves the version against its own last poll.
Exit 2 for what the daemon refuses (a bad field, named as the CLI's option; a wrong
token), 1 when it is unreachable or fails (5xx), naming the URL, never the token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from watcher.errors import BackendError, UsageError

if TYPE_CHECKING:
    from watcher.config import Config
    from watcher.monitor.reports import Report

TIMEOUT = 10.0  # seconds: connect, write and read; the daemon commits one row then answers
MAX_REPLY = 64 * 1024  # bytes of the daemon's answer read (it is a small JSON object)
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
    url = intake_url(http.listen)
    fields: dict[str, Any] = {
        "model": report.model,
        "metric": report.metric,
        "value": report.value,
        "samples": report.samples,
    }
    if report.version is not None:
        fields["version"] = report.version
    if report.at is not None:
        fields["at"] = report.at.isoformat()
    status, content = _post(url, json.dumps(fields).encode(), http.token.get_secret_value())
    return _answer(url, status, _json(content), names)


def _post(url: str, body: bytes, token: str) -> tuple[int, bytes]:
    """(status, body) of one POST; BackendError when the daemon cannot be reached. Plain
    http.client: no proxy from the environment and no redirect ever sees the token (and
    httpx would import rich, ~100 ms, through its own command line)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    try:
        conn.request("POST", parts.path, body=body, headers=headers)
        resp = conn.getresponse()
        return int(resp.status), resp.read(MAX_REPLY)
    except (OSError, http.client.HTTPException) as exc:  # refused, timed out, reset
        raise BackendError(
            f"the daemon at {url} is unreachable: {exc or type(exc).__name__}"
        ) from None
    finally:
        conn.close()


def _json(content: bytes) -> dict[str, Any]:
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
