"""The optional HTTP endpoint: ``/healthz``, ``/metrics`` and the write routes (off unless
``http.listen`` is set).

uvicorn and Starlette (``runtime.http_server``, ``runtime.http_app``, imported only here, in
:meth:`HttpEndpoint.start`) on a daemon thread with its own event loop. Request handling
never calls into other components (they are not thread-safe): the main loop refreshes a
health snapshot in :meth:`HttpEndpoint.tick`, and the handlers only read it. If the main
loop stops refreshing it, ``/healthz`` reports that too.

Idle or hostile clients cannot starve the daemon: a connection that sends nothing for
``KEEP_ALIVE`` s is closed, and one request (headers, body, handler, reply) gets
``REQUEST_DEADLINE`` s; at most ``MAX_CONNECTIONS`` are open at once (more are closed at
accept), so the endpoint holds a bounded number of file descriptors; errors are log lines.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from watcher.errors import ConfigError
from watcher.runtime.component import Component, Health
from watcher.runtime.logging import get_logger
from watcher.runtime.metrics import CONTENT_TYPE, METRICS, Metrics
from watcher.runtime.routes import Route

if TYPE_CHECKING:
    from watcher.runtime.http_server import ServerThread

log = get_logger("watcher.runtime.http")

REFRESH_EVERY = 1.0
# A snapshot older than this means the main loop is stuck (a tick can block on a
# backend for its request timeout, so leave room for that).
STALE_AFTER = 60.0
KEEP_ALIVE = 5  # seconds a connection may stay silent, from connect or after a reply
REQUEST_DEADLINE = 15.0  # seconds for one request: headers, body, handler and reply
MAX_CONNECTIONS = 64  # open at once; a scraper, a probe and webhooks need a handful
BACKLOG = 128  # a burst waits in the kernel's accept queue, costing us no descriptor
MAX_HEADER_BYTES = 16 * 1024  # request line and headers; over it: 400
GRACE = 1  # seconds stop() lets in-flight requests finish (handlers are short by contract)
WARN_EVERY = 60.0  # seconds between warnings about refused connections


def parse_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` / ``"[::1]:9464"`` → (host, port)."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"http.listen: {listen!r} is not HOST:PORT")
    return host, int(port)


def health_body(checks: Sequence[Health]) -> tuple[bool, dict[str, Any]]:
    """The /healthz document: overall status, the failing checks, and every check."""
    all_checks = {h.name: {"ok": h.ok, "ready": h.ready, **h.detail} for h in checks}
    failing = {name: c for name, c in all_checks.items() if not (c["ok"] and c["ready"])}
    ok = not failing
    return ok, {"status": "ok" if ok else "failing", "failing": failing, "checks": all_checks}


def safe_health(comp: Component) -> Health:
    """A component whose health() raises is unhealthy, not a crash of the caller."""
    try:
        return comp.health()
    except Exception as exc:
        return Health(comp.name, False, {"error": f"health check raised {type(exc).__name__}"})


@dataclass(frozen=True, slots=True)
class _Snapshot:
    at: float
    checks: tuple[Health, ...]


class HttpEndpoint:
    """Component that serves /healthz and /metrics for the other components, and the write
    routes features offer."""

    name = "http"

    def __init__(
        self,
        listen: str,
        components: Sequence[Component],
        *,
        metrics: Metrics | None = None,
        routes: Sequence[Route] = (),
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self.routes = {r.path: r for r in routes}
        # The list is shared with build_components, so components added later are seen.
        self.components = components
        self.metrics = metrics or METRICS
        self._server: ServerThread | None = None
        self._port: int | None = None
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is real even when 0 was asked for."""
        return self.host, self.port if self._port is None else self._port

    def start(self) -> None:
        # Lazy: uvicorn and Starlette only in a daemon that serves HTTP.
        from watcher.runtime.http_app import build_app
        from watcher.runtime.http_server import Limits, ServerThread

        sock = _bind(self.host, self.port)
        self._port = int(sock.getsockname()[1])
        limits = Limits(
            request_deadline=REQUEST_DEADLINE,
            idle=KEEP_ALIVE,
            max_connections=MAX_CONNECTIONS,
            backlog=BACKLOG,
            max_header_bytes=MAX_HEADER_BYTES,
            grace=GRACE,
            warn_every=WARN_EVERY,
        )
        app = build_app(self.healthz, self.metrics.render, CONTENT_TYPE, list(self.routes.values()))
        server = ServerThread(app, sock, limits)
        server.start()
        self._server = server
        host, port = self.address
        paths = ["/healthz", "/metrics", *self.routes]
        log.info("http_listening", url=f"http://{_url_host(host)}:{port}/", paths=paths)

    def tick(self) -> float:
        checks = tuple(safe_health(c) for c in self.components if c is not self)
        self.metrics.set_health((h.name, h.ok) for h in checks)
        with self._lock:
            self._snapshot = _Snapshot(time.monotonic(), checks)
        return REFRESH_EVERY

    def healthz(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            snap = self._snapshot
        if snap is None:
            return False, {
                "status": "failing",
                "failing": {"daemon": {"ok": False, "reason": "starting"}},
                "checks": {},
            }
        ok, doc = health_body(snap.checks)
        age = time.monotonic() - snap.at
        if age > STALE_AFTER:
            stuck = {"ok": False, "reason": "main loop stalled", "age_seconds": round(age, 1)}
            doc["failing"]["main_loop"] = doc["checks"]["main_loop"] = stuck
            doc["status"], ok = "failing", False
        return ok, doc

    def health(self) -> Health:
        alive = self._server is not None and self._server.alive
        host, port = self.address
        return Health(self.name, alive, {"listen": f"{host}:{port}"})

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(timeout=GRACE + 5.0)
        self._server = self._port = None


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, so that a bad address is a ConfigError from start(), at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise ConfigError(f"http.listen: cannot listen on {host}:{port}: {reason}") from None
    sock.setblocking(False)
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
