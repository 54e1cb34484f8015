"""Issue 15: 1,000 idle connections to the HTTP endpoint must not starve the daemon, and a
scan that ran out of file descriptors is retried.

A real `watcher run` with the systemd-default soft limit scaled down (RLIMIT_NOFILE 256,
so 1,000 connections are far beyond it, as 1,000 are beyond systemd's 1,024): /healthz
still answers, data scans still happen, and the log stays one JSON object per line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import select
import socket
import subprocess
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

import pytest

from tests.data.conftest import DataSide, drive, make_config, runs
from tests.reliability.conftest import (
    WATCHER,
    closed_port,
    daemon_env,
    run_hashes,
    stop_daemon,
    wait_for,
)
from watcher.cli.service_unit import UnitSpec, render_unit
from watcher.data.hashing import ScanResult
from watcher.runtime.state import open_state

IDLE_CONNECTIONS = 1000
NOFILE = 256
CHUNK = 50


def _limit_fds() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, hard))


def _healthz(port: int) -> int | None:
    """The /healthz status code, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


def _established(socks: list[socket.socket]) -> bool:
    """Every connect finished (the server accepted it, or it waits in the listen queue)."""
    poller = select.poll()
    for s in socks:
        poller.register(s, select.POLLOUT)
    ready = {fd for fd, ev in poller.poll(0) if ev & select.POLLOUT}
    return all(
        s.fileno() in ready and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for s in socks
    )


def _idle_connections(port: int, n: int) -> tuple[list[socket.socket], int]:
    """Open up to ``n`` connections that never send a byte, CHUNK at a time like a client
    that holds them, each chunk connected before the next; stop at the first chunk that
    does not get in. Returns the sockets and how many connected."""
    socks: list[socket.socket] = []
    while len(socks) < n:
        chunk = []
        for _ in range(min(CHUNK, n - len(socks))):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            code = s.connect_ex(("127.0.0.1", port))
            assert code in (0, errno.EINPROGRESS), errno.errorcode.get(code, code)
            chunk.append(s)
        socks += chunk
        try:
            wait_for(partial(_established, chunk), 30, "a chunk of connects")
        except AssertionError:
            return socks, len(socks) - len(chunk)
    return socks, len(socks)


def test_idle_connections_do_not_starve_healthz_or_scans(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x,target\n1,0\n")
    port = closed_port()
    env = daemon_env(
        tmp_path, WATCHER_HTTP__LISTEN=f"127.0.0.1:{port}", WATCHER_WATCH__MODE="events"
    )
    log = tmp_path / "watcher.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(  # start_daemon, with a lower file limit
            [*WATCHER, "run"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit_fds,  # noqa: PLW1509  only setrlimit, before exec
        )
    socks: list[socket.socket] = []
    try:
        wait_for(lambda: len(run_hashes(tmp_path)) == 1, 120, "the startup run")
        wait_for(lambda: _healthz(port) is not None, 60, "/healthz before the flood")
        socks, connected = _idle_connections(port, IDLE_CONNECTIONS)
        wait_for(lambda: _healthz(port) is not None, 120, "/healthz during the flood", poll=1)
        (tmp_path / "data" / "b.csv").write_text("x,target\n2,1\n")
        wait_for(lambda: len(run_hashes(tmp_path)) == 2, 120, "a scan and run during the flood")
        assert proc.poll() is None, "the daemon died"
        assert IDLE_CONNECTIONS == connected, "the endpoint stopped accepting"
    finally:
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()
        code = stop_daemon(proc)
    text = log.read_text()
    assert 0 == code, text[-3000:]
    assert "Traceback" not in text and "Too many open files" not in text, text[-3000:]
    for line in text.splitlines():  # one JSON object per line: nothing raw on stderr
        json.loads(line)


def test_scan_failing_with_emfile_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan that hit "Too many open files" was never rescheduled: the change waited for
    the reconcile (1 h here). The first scan fails with a real EMFILE OSError (raised by
    a stand-in: a process out of descriptors cannot run the rest of the test), then the
    real hasher runs on the retry, with no new event."""
    cfg = make_config(tmp_path, **{"watch.reconcile_interval": "1h"})
    cfg.watch.data_dir.mkdir()
    (cfg.watch.data_dir / "a.csv").write_text("x,target\n1,0\n")
    state = open_state(cfg.state.dir)
    dw = DataSide(cfg, state, progress=False, follow_interval=0.2)
    real_scan = dw.hasher.scan
    calls = []

    def scan_once_emfile() -> ScanResult:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        return real_scan()

    monkeypatch.setattr(dw.hasher, "scan", scan_once_emfile)
    try:
        dw.start()
        drive(dw, lambda: len(runs(tmp_path)) == 1, timeout=60)
        drive(dw, lambda: not dw.outbox.following(), timeout=30)
        errors = state.events(kinds=["data.error"])
        assert 1 == len(errors) and "Too many open files" in errors[0].message, errors
        assert dw.status.last_error is None
    finally:
        dw.stop()
        state.close()


def test_unit_raises_the_file_limit() -> None:
    """The unit set no LimitNOFILE: systemd's soft 1,024 was what the idle clients hit."""
    unit = render_unit(UnitSpec())
    limits = [line for line in unit.splitlines() if line.startswith("LimitNOFILE=")]
    assert len(limits) == 1 and int(limits[0].split("=")[1]) >= 16384, limits
    repo = Path(__file__).parents[2] / "systemd" / "registry-watcher.service"
    assert limits[0] in repo.read_text().splitlines()
