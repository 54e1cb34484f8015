"""The HTTP endpoint's limits on a real socket: body limits (by Content-Length and by a
chunked stream), slow and idle clients, the connection cap, a bind error, IPv6, and a
stop() that does not wait for a request in flight."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import httpx
import pytest
from structlog.testing import capture_logs

import watcher.runtime.http
from watcher.errors import ConfigError
from watcher.runtime.http import HttpEndpoint
from watcher.runtime.metrics import Metrics
from watcher.runtime.routes import Reply, Request, Route

WAIT = 60.0  # generous deadline for anything that must happen


class _Echo:
    path = "/v1/echo"
    methods: tuple[str, ...] = ("POST",)
    max_body = 16

    def handle(self, request: Request) -> Reply:
        if request.body == b"boom":
            raise RuntimeError("handler bug")
        return Reply(202, {"body": request.body.decode()})


class _Blocking:
    """A route whose handler waits until the test lets it go."""

    path = "/v1/block"
    methods: tuple[str, ...] = ("POST",)
    max_body = 16

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def handle(self, request: Request) -> Reply:
        self.entered.set()
        self.release.wait(WAIT)
        return Reply(200, {})


@pytest.fixture
def start(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., HttpEndpoint]]:
    """Start an endpoint with the echo route after patching the module's limits."""
    started: list[HttpEndpoint] = []

    def _start(routes: Sequence[Route] = (), **limits: float) -> HttpEndpoint:
        for name, value in limits.items():
            monkeypatch.setattr(watcher.runtime.http, name, value)
        ep = HttpEndpoint("127.0.0.1:0", [], metrics=Metrics(), routes=routes or [_Echo()])
        ep.start()
        started.append(ep)
        return ep

    yield _start
    for ep in started:
        ep.stop()


def _wait(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset ends it too)."""
    sock.settimeout(WAIT)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _closed_by_server(sock: socket.socket) -> bool:
    """Blocks until the server closes or resets ``sock`` (or WAIT passes: False)."""
    sock.settimeout(WAIT)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body), the connection left open."""
    sock.settimeout(WAIT)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or pytest.fail(f"closed after {data!r}")
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536) or pytest.fail(f"closed after {data + body!r}")
    return head + b"\r\n\r\n" + body


def _healthz(ep: HttpEndpoint) -> int | None:
    host, port = ep.address
    try:
        return httpx.get(f"http://{host}:{port}/healthz", timeout=10).status_code
    except httpx.TransportError:
        return None


def test_oversized_content_length_is_413_before_any_body_byte(
    start: Callable[..., HttpEndpoint],
) -> None:
    """Headers announcing 1 MB against a 16-byte limit: 413 although not one byte of the
    body was sent; a client sending it anyway reads the 413 (the rest is discarded)."""
    ep = start()
    head = b"POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n"
    with socket.create_connection(ep.address, timeout=WAIT) as sock:
        sock.sendall(head)
        reply = _response(sock)
    assert reply.startswith(b"HTTP/1.1 413 "), reply
    assert b'"body over 16 bytes"' in reply
    host, port = ep.address
    with httpx.Client(timeout=WAIT) as c:
        assert 413 == c.post(f"http://{host}:{port}/v1/echo", content=b"x" * 1_000_000).status_code
    assert 200 == httpx.get(f"http://{ep.address[0]}:{ep.address[1]}/metrics").status_code


def test_chunked_body_over_the_limit_is_413_mid_stream(
    start: Callable[..., HttpEndpoint],
) -> None:
    """A chunked body is accepted up to the limit; past it the reply is 413 while the
    client has not finished sending (no last chunk): the body is not read to its end."""
    ep = start()
    head = b"POST /v1/echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection(ep.address, timeout=WAIT) as sock:
        sock.sendall(head + b"5\r\nhello\r\n0\r\n\r\n")
        assert _response(sock).startswith(b"HTTP/1.1 202 ")
    with socket.create_connection(ep.address, timeout=WAIT) as sock:
        sock.sendall(head + b"a\r\n0123456789\r\n")
        sock.sendall(b"a\r\n0123456789\r\n")  # 20 bytes > 16, and no terminating chunk
        reply = _response(sock)
    assert reply.startswith(b"HTTP/1.1 413 "), reply
    with socket.create_connection(ep.address, timeout=WAIT) as sock:  # no length at all
        sock.sendall(b"POST /v1/echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert _read_all(sock).startswith(b"HTTP/1.1 411 ")


def test_trickled_headers_are_cut_at_the_request_deadline(
    start: Callable[..., HttpEndpoint],
) -> None:
    """A byte every 0.2 s never looks idle; the per-request deadline closes the connection
    anyway, so slow clients cannot hold every slot (review of #15 item 5)."""
    ep = start(REQUEST_DEADLINE=1.0)
    began = time.monotonic()
    with socket.create_connection(ep.address, timeout=WAIT) as sock:
        sock.settimeout(0.2)
        closed = False
        while not closed and time.monotonic() - began < WAIT:  # only the cut ends it early
            try:
                sock.sendall(b"G")
                closed = sock.recv(1024) == b""
            except TimeoutError:
                continue
            except OSError:  # reset or broken pipe: cut as well
                closed = True
    assert closed, f"the server kept a trickling connection for {WAIT} s"
    assert time.monotonic() - began >= 1.0
    assert 503 == _healthz(ep)  # still serving (503: never ticked)


def test_a_silent_connection_is_closed_after_keep_alive(
    start: Callable[..., HttpEndpoint],
) -> None:
    """A client that connects and sends nothing is dropped after KEEP_ALIVE seconds (uvicorn
    itself starts that timer only after a first reply)."""
    ep = start(KEEP_ALIVE=1, REQUEST_DEADLINE=WAIT * 2)
    with socket.create_connection(ep.address, timeout=WAIT) as sock:
        began = time.monotonic()
        assert _closed_by_server(sock), "a silent connection was kept"
    assert time.monotonic() - began >= 0.9


def test_idle_connections_past_the_cap_are_refused_until_one_leaves(
    start: Callable[..., HttpEndpoint],
) -> None:
    """MAX_CONNECTIONS idle clients hold every slot: a further connection (a /healthz probe
    too) is closed at accept, with one warning; as soon as one leaves, /healthz answers."""
    ep = start(MAX_CONNECTIONS=4, KEEP_ALIVE=600, REQUEST_DEADLINE=600.0)
    idle = [socket.create_connection(ep.address, timeout=WAIT) for _ in range(4)]
    try:
        with capture_logs() as logs:
            with socket.create_connection(ep.address, timeout=WAIT) as extra:
                assert _closed_by_server(extra), "a connection past the cap was served"
            assert _healthz(ep) is None
        refused = [e for e in logs if e["event"] == "http_connections_refused"]
        assert 1 == len(refused) and 4 == refused[0]["limit"], logs
        idle.pop().close()
        _wait(lambda: _healthz(ep) == 503, "/healthz once a slot is free")
    finally:
        for sock in idle:
            sock.close()


def test_stop_does_not_wait_for_a_request_in_flight(
    start: Callable[..., HttpEndpoint],
) -> None:
    """stop() while a handler runs returns after the grace period, not when the handler
    ends; the client gets a 500 or a closed connection; the port is closed after."""
    route = _Blocking()
    ep = start(routes=[route], GRACE=1)
    host, port = ep.address
    outcome: list[object] = []

    def post() -> None:
        try:
            outcome.append(httpx.post(f"http://{host}:{port}/v1/block", content=b"x").status_code)
        except httpx.TransportError as exc:
            outcome.append(exc)

    client = threading.Thread(target=post)
    client.start()
    try:
        assert route.entered.wait(WAIT), "the handler never ran"
        began = time.monotonic()
        ep.stop()
        took = time.monotonic() - began
    finally:
        route.release.set()
        client.join(WAIT)
    assert took < 1 + 5.0, f"stop() took {took:.1f} s with a request in flight"
    assert outcome and (outcome[0] == 500 or isinstance(outcome[0], httpx.TransportError))
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=WAIT).close()
    # The abandoned worker thread ends once its handler returns: nothing holds the exit.
    _wait(
        lambda: not any(t.name == "AnyIO worker thread" for t in threading.enumerate()),
        "the worker thread to end",
    )


def test_idle_stop_is_quick_with_a_keep_alive_client_connected(
    start: Callable[..., HttpEndpoint],
) -> None:
    ep = start()
    host, port = ep.address
    with httpx.Client(timeout=10) as keep_alive:
        assert 503 == keep_alive.get(f"http://{host}:{port}/healthz").status_code
        began = time.monotonic()
        ep.stop()
        took = time.monotonic() - began
    assert took < 2.0, f"stop() took {took:.2f} s"


def test_handler_error_is_500_and_one_line_without_secrets(
    start: Callable[..., HttpEndpoint],
) -> None:
    ep = start()
    host, port = ep.address
    secret = "s3cr3t-token-value"
    with capture_logs() as logs, httpx.Client(timeout=10) as c:
        headers = {"Authorization": f"Bearer {secret}", "X-MLflow-Signature": secret}
        assert (
            500
            == c.post(f"http://{host}:{port}/v1/echo", content=b"boom", headers=headers).status_code
        )
        assert 202 == c.post(f"http://{host}:{port}/v1/echo", content=b"ok").status_code
    failed = [e for e in logs if e["event"] == "http_route_failed"]
    assert [{"path": "/v1/echo", "error": "RuntimeError"}] == [
        {k: e[k] for k in ("path", "error")} for e in failed
    ]
    assert secret not in repr(logs)


def test_bind_error_is_a_config_error_at_start() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        ep = HttpEndpoint(f"127.0.0.1:{port}", [], metrics=Metrics())
        with pytest.raises(
            ConfigError, match=rf"^http.listen: cannot listen on 127.0.0.1:{port}: "
        ):
            ep.start()
        assert not ep.health().ok


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_ipv6_loopback() -> None:
    ep = HttpEndpoint("[::1]:0", [], metrics=Metrics())
    ep.start()
    try:
        host, port = ep.address
        assert "::1" == host and port > 0
        ep.tick()
        assert 200 == httpx.get(f"http://[::1]:{port}/healthz", timeout=10).status_code
    finally:
        ep.stop()


def test_one_remote_address_cannot_take_every_slot() -> None:
    """With ``http.allow_public``: a remote address gets at most ``per_peer`` connections and
    never the last ``loopback_reserve`` slots, which stay for the probe and the scraper on
    loopback; the cap binds everyone."""
    from watcher.runtime.http_server import Limits, refused

    limits = Limits(15.0, 5, 8, 16, 16384, 1, 60.0, per_peer=3, loopback_reserve=2)
    remote, other = "203.0.113.7", "198.51.100.9"
    assert not refused(remote, [remote] * 2, limits)
    assert refused(remote, [remote] * 3, limits)  # its share
    assert not refused(other, [remote] * 3, limits)
    assert refused(other, [remote] * 3 + [other] * 3, limits)  # the loopback reserve
    assert not refused("127.0.0.1", [remote] * 3 + [other] * 3, limits)
    assert not refused("::1", [remote] * 3 + [other] * 3 + ["127.0.0.1"], limits)
    assert refused("127.0.0.1", ["127.0.0.1"] * 8, limits)  # the cap
    assert refused("", [], Limits(15.0, 5, 1, 16, 16384, 1, 60.0, loopback_reserve=1))
