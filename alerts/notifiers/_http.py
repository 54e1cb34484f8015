"""One place where notifiers POST over httpx and translate failures, secret-free."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Self

import httpx

from alerts.errors import NotifyError
from alerts.notifiers.base import Channel
from alerts.redaction import redact


def post(
    client: httpx.Client,
    channel: str,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
) -> httpx.Response:
    """POST and return a 2xx response, else raise NotifyError without the URL in it."""
    try:
        response = client.post(url, content=content, headers=dict(headers))
    except httpx.TimeoutException as exc:
        # `from None`: httpx messages and chained tracebacks may quote the URL.
        raise NotifyError(channel, f"timed out ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise NotifyError(channel, f"{type(exc).__name__}: {redact(str(exc))}") from None
    if not response.is_success:
        body = redact(response.text)[:200].strip()  # redact first: a cut hides a secret
        raise NotifyError(channel, f"HTTP {response.status_code}" + (f": {body}" if body else ""))
    return response


def make_client(timeout: float, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    # Explicit timeouts everywhere: a hung receiver must not stall the daemon's loop.
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
        transport=transport,
        follow_redirects=False,
    )


class HttpClientOwner(Channel):
    """Mixin for notifiers holding an httpx client: ``close()`` and context manager."""

    _client: httpx.Client

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
