"""The server under ``runtime.http``: uvicorn (h11) on its own thread and event loop.

Imported only when ``http.listen`` is set (by ``HttpEndpoint.start``). uvicorn guards the
parsing (h11: header block size) and keep-alive; this module adds what it lacks for an
endpoint with write routes (:class:`Limits`): a deadline per request (headers, body,
handler and reply, from connect or from the previous reply), an idle timeout from connect
(uvicorn's starts only after a reply), a cap on open connections (more are closed at
accept, with a warning at most every ``warn_every`` s), no signal handlers (the daemon
owns SIGTERM), a bounded graceful stop, and logs that stay single structlog lines: no
access log, no traceback from uvicorn or asyncio, never a request header.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from watcher.runtime.logging import get_logger

log = get_logger("watcher.runtime.http")


@dataclass(frozen=True, slots=True)
class Limits:
    request_deadline: float  # seconds for one request and its reply
    idle: int  # seconds a connection may stay silent (from connect or after a reply)
    max_connections: int  # open at once; more are closed at accept
    backlog: int  # waiting in the kernel's accept queue
    max_header_bytes: int  # request line and headers (h11's limit; over it: 400)
    grace: int  # seconds stop() lets in-flight requests finish
    warn_every: float  # seconds between warnings about refused connections
    per_peer: int = 16  # open at once from one address that is not loopback
    loopback_reserve: int = 4  # slots only loopback clients (probe, scraper) may take


def refused(peer: str, peers: Sequence[str], limits: Limits) -> bool:
    """Whether a new connection from ``peer`` is over the limits, given the peers of
    the connections open now: the cap for all, and for a remote address a share of its
    own and never the last slots, so one remote client cannot shut out /healthz."""
    if len(peers) >= limits.max_connections:
        return True
    if _loopback(peer):
        return False
    if len(peers) >= limits.max_connections - limits.loopback_reserve:
        return True
    return sum(1 for p in peers if p == peer) >= limits.per_peer


def _loopback(peer: str) -> bool:
    try:
        return ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False  # a unix socket or an unknown peer: no loopback privilege


class _Refusals:
    """Counts refused connections; warns at most every ``every`` seconds."""

    def __init__(self, every: float) -> None:
        self.every, self.count, self.warned_at = every, 0, -every

    def refuse(self, event: str, **detail: object) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.warned_at >= self.every:
            log.warning(event, refused=self.count, **detail)
            self.warned_at, self.count = now, 0


class _OneLine(logging.Filter):
    """uvicorn's own log records, kept to one line: below ERROR (a malformed request, the
    shutdown's progress) to our debug; an error without its traceback (its type instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno < logging.ERROR or isinstance(exc, asyncio.CancelledError):
            # A request cut by stop() past the grace period is already counted in
            # uvicorn's "Cancel N running task(s)" error.
            log.debug("http_server_note", note=record.getMessage())
            return False
        if exc is not None:
            record.msg, record.args = f"{record.getMessage().strip()}: {type(exc).__name__}", ()
            record.exc_info = record.exc_text = None
        return True


def _quiet_uvicorn() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _OneLine) for f in logger.filters):
        logger.addFilter(_OneLine())


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with the connection cap, the idle timeout from connect and the
    per-request deadline. Set on a per-server subclass: ``limits``, ``refusals``."""

    limits: ClassVar[Limits]
    refusals: ClassVar[_Refusals]
    _refused = False
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peername = transport.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) else ""
        peers = [str(c[0]) for c in (getattr(p, "client", None) for p in self.connections) if c]
        if refused(peer, peers, self.limits):
            self.transport, self._refused = transport, True
            self.refusals.refuse("http_connections_refused", limit=self.limits.max_connections)
            transport.abort()
            return
        super().connection_made(transport)
        # uvicorn arms its keep-alive timer only after a reply: a client that connects and
        # sends nothing would hold its connection for ever.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if not self._refused:
            super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request on this connection gets a deadline of its own

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(self.limits.request_deadline, self._expire)

    def _expire(self) -> None:
        client = self.client[0] if self.client else ""
        log.debug("http_connection_expired", client=client, after=self.limits.request_deadline)
        self.transport.abort()  # not close(): that would wait for a reader that may never read


class _Server(uvicorn.Server):
    """uvicorn's Server, woken at once by stop() (its loop polls every 0.1 s) and telling
    start() when it serves."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.serving = threading.Event()
        self.wake: asyncio.Event | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.serving.set()

    async def main_loop(self) -> None:
        self.wake = asyncio.Event()
        counter = 0
        while not await self.on_tick(counter):
            counter += 10  # on_tick refreshes the Date header when counter % 10 == 0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 1.0)

    def exit_soon(self) -> None:
        """On the loop's thread: leave main_loop now and shut down."""
        self.should_exit = True
        if self.wake is not None:
            self.wake.set()


class ServerThread:
    """One uvicorn server on a daemon thread with its own event loop, serving ``app`` on a
    socket already bound and listening (so a bind error is the caller's, synchronously)."""

    def __init__(self, app: Any, sock: socket.socket, limits: Limits) -> None:
        _quiet_uvicorn()
        self.refusals = _Refusals(limits.warn_every)
        protocol = type(
            "_BoundProtocol", (_Protocol,), {"limits": limits, "refusals": self.refusals}
        )
        config = uvicorn.Config(
            app,
            http=protocol,
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            backlog=limits.backlog,
            timeout_keep_alive=limits.idle,
            timeout_graceful_shutdown=limits.grace,
            h11_max_incomplete_event_size=limits.max_header_bytes,
        )
        self._sock = sock
        self._server = _Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    def start(self, timeout: float = 60.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.serving.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._sock.close()
                raise RuntimeError("the HTTP server did not start (see http_server_failed)")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(self._server.exit_soon)
        self._thread.join(timeout)

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._loop_error)
        try:
            loop.run_until_complete(self._serve())
        except Exception as exc:  # a bug: one line, and health() turns false
            log.error("http_server_failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            loop.close()

    async def _serve(self) -> None:
        try:
            await self._server.serve(sockets=[self._sock])
        finally:
            # After the grace period uvicorn cancels the requests' tasks but leaves their
            # connections open: close them, then let the cancelled tasks finish.
            state = self._server.server_state
            for conn in list(state.connections):
                conn.transport.abort()
            if state.tasks:
                await asyncio.wait(list(state.tasks), timeout=1.0)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's errors as one line. Out of descriptors at accept (EMFILE), asyncio
        stops accepting for a second and says so here: a rate-limited warning."""
        exc = context.get("exception")
        error = f"{type(exc).__name__}: {exc}" if exc else ""
        if "accept" in str(context.get("message", "")):
            self.refusals.refuse("http_accept_failed", error=error)
        else:
            log.warning("http_loop_error", message=context.get("message"), error=error)
