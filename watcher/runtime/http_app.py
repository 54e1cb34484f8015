"""The Starlette application ``runtime.http`` serves: /healthz, /metrics and the write routes.

Imported only when ``http.listen`` is set. Route handlers run on a worker thread (anyio),
never on the event loop; a body is read only up to ``Route.max_body``: 413 as soon as
Content-Length or the bytes streamed so far exceed it. uvicorn then discards the rest of
the body (not buffered) until the request deadline, so that the client reads the 413
instead of a reset.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from http import HTTPStatus
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.routing import Route as StarletteRoute

from watcher.runtime.logging import get_logger
from watcher.runtime.routes import Reply, Request, Route, error

log = get_logger("watcher.runtime.http")

NO_STORE = {"Cache-Control": "no-store"}


def _json(reply: Reply) -> Response:
    payload = json.dumps(dict(reply.body), default=str, sort_keys=True) + "\n"
    headers = {**reply.headers, **NO_STORE}
    return Response(payload, reply.status, headers=headers, media_type="application/json")


async def _http_error(request: StarletteRequest, exc: Exception) -> Response:
    """Starlette's 404 and 405 in our error shape."""
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        return _json(error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error"))
    reply = error(exc.status_code, str(exc.detail).lower())
    return _json(Reply(reply.status, reply.body, dict(exc.headers or {})))


async def _body(request: StarletteRequest, limit: int) -> bytes | None:
    """The body, or None as soon as Content-Length or the bytes so far exceed ``limit``
    (uvicorn reads at most 64 KiB ahead of this loop)."""
    length = request.headers.get("content-length")
    if length is not None and int(length) > limit:  # h11 refused a non-numeric one
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


async def _write(route: Route, request: StarletteRequest) -> Response:
    headers = {k.lower(): v for k, v in request.headers.items()}
    if (
        "content-length" not in headers
        and "chunked" not in headers.get("transfer-encoding", "").lower()
    ):
        return _json(error(HTTPStatus.LENGTH_REQUIRED, "Content-Length required"))
    try:
        body = await _body(request, route.max_body)
    except ClientDisconnect:
        return _json(error(HTTPStatus.BAD_REQUEST, "client disconnected"))  # sent to no one
    if body is None:
        return _json(
            error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {route.max_body} bytes")
        )
    client = request.client.host if request.client else ""
    req = Request(request.method, route.path, headers, body, client)
    try:
        # abandon_on_cancel: a stop() past the grace period does not wait for the handler.
        reply = await anyio.to_thread.run_sync(route.handle, req, abandon_on_cancel=True)
    except Exception as exc:
        log.warning("http_route_failed", path=route.path, error=type(exc).__name__)
        reply = error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
    return _json(reply)


def build_app(
    healthz: Callable[[], tuple[bool, dict[str, Any]]],
    metrics: Callable[[], bytes],
    metrics_type: str,
    routes: Sequence[Route],
) -> Starlette:
    """GET/HEAD /healthz (200 or 503) and /metrics; each route on its methods."""

    async def health(_: StarletteRequest) -> Response:
        ok, doc = healthz()
        status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
        return _json(Reply(status, doc))

    async def prometheus(_: StarletteRequest) -> Response:
        text = await anyio.to_thread.run_sync(metrics)  # the registry's lock: not on the loop
        return Response(text, headers=NO_STORE, media_type=metrics_type)

    table = [
        StarletteRoute("/healthz", health, methods=["GET"]),
        StarletteRoute("/metrics", prometheus, methods=["GET"]),
        *(StarletteRoute(r.path, partial(_write, r), methods=r.methods) for r in routes),
    ]
    handlers: Mapping[Any, Any] = {HTTPException: _http_error}
    app = Starlette(routes=table, exception_handlers=handlers)
    # No 307 to a slash-less path built from the client's Host header: a client that
    # follows it would re-send its token to whatever host it named.
    app.router.redirect_slashes = False
    return app
