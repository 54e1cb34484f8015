"""The optional HTTP endpoint: ``/healthz`` and ``/metrics`` (off unless ``http.listen`` is set).

A stdlib ``ThreadingHTTPServer`` on a daemon thread. Request threads never call
into other components (they are not thread-safe): the main loop refreshes a
health snapshot in :meth:`HttpEndpoint.tick`, and the handlers only read it. If
the main loop stops refreshing it, ``/healthz`` reports that too.

Idle or hostile clients cannot starve the daemon: each read and write times out, and
a whole connection after ``CONNECTION_DEADLINE``;
at most ``MAX_CONNECTIONS`` are served at once (more are closed at accept), so the
endpoint holds a bounded number of file descriptors and threads; errors are log lines.
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from watcher.errors import ConfigError
from watcher.runtime.component import Component, Health
from watcher.runtime.logging import get_logger
from watcher.runtime.metrics import CONTENT_TYPE, METRICS, Metrics
from watcher.runtime.routes import Reply, Request, Route, error

log = get_logger("watcher.runtime.http")

REFRESH_EVERY = 1.0
# A snapshot older than this means the main loop is stuck (a tick can block on a
# backend for its request timeout, so leave room for that).
STALE_AFTER = 60.0
READ_TIMEOUT = 10.0  # seconds per read/write of a client: an idle connection is dropped
CONNECTION_DEADLINE = 15.0  # seconds a client may take for its whole request and reply
MAX_CONNECTIONS = 64  # served at once; a scraper and a probe need a handful
ACCEPT_BACKOFF = 0.5  # seconds without accepting after EMFILE (the listener stays readable)
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


def _cut(request: socket.socket) -> None:
    """Unblock the handler's read: the connection outlived its deadline."""
    with contextlib.suppress(OSError):  # already closed
        request.shutdown(socket.SHUT_RDWR)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    at: float
    checks: tuple[Health, ...]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # a burst waits in the kernel, costing us no descriptor
    endpoint: HttpEndpoint

    def server_activate(self) -> None:
        super().server_activate()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._refused = 0
        self._warned_at = -WARN_EVERY

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self._refuse("http_accept_failed", error=str(exc))
                time.sleep(ACCEPT_BACKOFF)  # else serve_forever spins on the pending accept
            raise  # socketserver drops the attempt

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse("http_connections_refused", limit=MAX_CONNECTIONS)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # the thread never started
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # A deadline for the whole connection, not only each read: a client trickling a
        # byte every few seconds would otherwise hold its slot for ever.
        deadline = threading.Timer(CONNECTION_DEADLINE, _cut, args=(request,))
        deadline.daemon = True
        deadline.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            deadline.cancel()
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line instead of socketserver's traceback on stderr."""
        exc = sys.exc_info()[1]
        client = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        if isinstance(exc, OSError):  # the client went away, reset or timed out
            log.debug("http_connection_dropped", client=client, error=repr(exc))
        else:
            log.warning("http_request_failed", client=client, error=f"{type(exc).__name__}: {exc}")

    def _refuse(self, event: str, **detail: object) -> None:
        """Count a refused connection; warn at most every WARN_EVERY seconds."""
        self._refused += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            log.warning(event, refused=self._refused, **detail)
            self._warned_at, self._refused = now, 0


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "registry-watcher"
    sys_version = ""
    timeout = READ_TIMEOUT  # StreamRequestHandler applies it to the socket

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_POST(self) -> None:
        route = self.server.endpoint.routes.get(self.path.split("?", 1)[0])
        if route is None:
            self._reply(error(HTTPStatus.NOT_FOUND, "not found"))
        elif "POST" not in route.methods:
            self._reply(error(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed"))
        else:
            self._reply(self._call(route))

    def _call(self, route: Route) -> Reply:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit():
            return error(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
        if int(length) > route.max_body:
            self.close_connection = True  # the body is not read: do not parse it as a request
            return error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {route.max_body} bytes")
        body = self.rfile.read(int(length))
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = Request("POST", route.path, headers, body, self.client_address[0])
        try:
            return route.handle(request)
        except Exception as exc:
            log.warning("http_route_failed", path=route.path, error=f"{type(exc).__name__}")
            return error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    def _reply(self, reply: Reply) -> None:
        payload = (json.dumps(dict(reply.body), default=str, sort_keys=True) + "\n").encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def _serve(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        endpoint = self.server.endpoint
        if path in endpoint.routes and path not in ("/healthz", "/metrics"):
            self._reply(error(HTTPStatus.METHOD_NOT_ALLOWED, "method not allowed"))
            return
        if path == "/healthz":
            ok, doc = endpoint.healthz()
            status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
            payload = (json.dumps(doc, default=str, sort_keys=True) + "\n").encode()
            ctype = "application/json"
        elif path == "/metrics":
            status, payload, ctype = HTTPStatus.OK, endpoint.metrics.render(), CONTENT_TYPE
        else:
            status, payload, ctype = HTTPStatus.NOT_FOUND, b"not found\n", "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http_request", client=self.client_address[0], line=format % args)


class HttpEndpoint:
    """Component that serves /healthz and /metrics for the other components."""

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
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is real even when 0 was asked for."""
        if self._server is None:
            return self.host, self.port
        return self.host, int(self._server.server_address[1])

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_cls = type("_BoundServer", (_Server,), {"address_family": family})
        try:
            server = server_cls((self.host, self.port), _Handler)
        except OSError as exc:
            raise ConfigError(
                f"http.listen: cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from None
        server.endpoint = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True
        )
        self._thread.start()
        host, port = self.address
        paths = ["/healthz", "/metrics", *self.routes]
        log.info("http_listening", url=f"http://{host}:{port}/", paths=paths)

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
        alive = self._thread is not None and self._thread.is_alive()
        host, port = self.address
        return Health(self.name, alive, {"listen": f"{host}:{port}"})

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None
