"""Events vs polling: how soon an alias moved in MLflow reaches the watcher's history, and
what watching idle models costs in MLflow calls.

1. Latency. A real ``mlflow server`` (webhooks allowed to loopback, plain http) and a real
   ``watcher run`` with its receiver installed by ``watcher webhooks install``. The
   Production alias of one model is moved ``--moves`` times (default 50) with the MLflow
   client; each figure is the time from the move's return to its
   ``registry.production_changed`` row in the watcher's state DB (read every 5 ms); each
   move waits a random 0-2 s first, so moves fall at random moments. Then
   the same with webhooks off, polling every ``--poll-interval`` (default 30 s, the
   default), ``--poll-moves`` times (default 10: each waits half a poll on average).
2. MLflow calls per idle hour with ``--idle-models`` models (default 300), counted by a
   proxy between the watcher and the server: each mode runs for ``--window`` seconds
   with every interval divided by ``--scale`` (default 10; a 30 s poll becomes 3 s, a
   5 min reconcile 30 s) and the count is scaled back to an hour at the default
   intervals, plus the webhook self-test's calls as budgeted (it runs after 30 min without
   a delivery, which a scaled window never reaches). The anchor is 30 s polling; the goal
   is at least 10 times fewer calls.

    uv run python benchmarks/events.py [--moves 50] [--poll-moves 10] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.mlflow_server import _free_port, start_server, stop_server
from benchmarks.report import Report, add_json_arg
from watcher.monitor.webhook_health import SELF_TEST_EVERY

os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
WATCHER = str(Path(sys.executable).with_name("watcher"))
MODEL = "events-bench"
POLL_DEFAULT, RECONCILE_DEFAULT = 30.0, 300.0
HOOK_JITTER = 2.0  # seconds: each webhook-mode move waits a random 0..2 s first
SELF_TEST_CALLS = 2  # list webhooks + ask MLflow for a test delivery (webhook_health.py)
WEBHOOK_ENV = {
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_CACHE_TTL": "1",
}


class _CountingProxy(ThreadingHTTPServer):
    """Forwards every request to the MLflow server and counts them (keep-alive kept)."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.count = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _CountingProxy

    def _forward(self) -> None:
        with self.server.lock:
            self.server.count += 1
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        conn.close()

    do_GET = do_POST = do_PATCH = do_DELETE = _forward  # noqa: N815  (http.server's names)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _proxy(upstream: str) -> Iterator[_CountingProxy]:
    proxy = _CountingProxy(upstream)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()


def _config(
    home: Path, tracking_uri: str, *, webhooks: bool, poll: float, reconcile: float
) -> Path:
    """A watcher home: watcher.toml, an empty data dir, the webhook secret in a file."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "data").mkdir(exist_ok=True)
    port = _free_port()
    lines = [
        "[watch]",
        'data_dir = "data"',
        "[trigger]",
        'backend = "command"',
        'command = ["true"]',
        "[mlflow]",
        f'tracking_uri = "{tracking_uri}"',
        "[monitor]",
        'models = ["*"]',
        f"poll_interval = {poll}",
        "[http]",
        f'listen = "127.0.0.1:{port}"',
    ]
    if webhooks:
        secret = home / "webhook.secret"
        secret.write_text(secrets.token_hex(32))
        secret.chmod(0o600)
        # Under [monitor] (before its sub-table): the reconcile poll's period.
        lines.insert(lines.index("[http]"), f"reconcile_interval = {max(reconcile, poll)}")
        lines += ["[monitor.webhooks]", f'secret_file = "{secret}"']
    (home / "watcher.toml").write_text("\n".join(lines) + "\n")
    return home


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WATCHER_")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _cli(home: Path, *args: str) -> str:
    done = subprocess.run(
        [WATCHER, *args],
        check=False,
        cwd=home,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise SystemExit(f"watcher {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


@contextlib.contextmanager
def _daemon(home: Path) -> Iterator[subprocess.Popen[bytes]]:
    with (home / "watcher.log").open("wb") as log:
        proc = subprocess.Popen(
            [WATCHER, "--log-format", "json", "run"],
            cwd=home,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(lambda: _state(home) is not None and _polled(home), 180, "the first poll", proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(cond: Any, timeout: float, what: str, proc: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"watcher exited ({proc.returncode}) waiting for {what}")
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


def _state(home: Path) -> sqlite3.Connection | None:
    path = home / ".watcher" / "state.db"
    if not path.exists():
        return None
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def _polled(home: Path) -> bool:
    conn = _state(home)
    if conn is None:
        return False
    with contextlib.closing(conn):
        with contextlib.suppress(sqlite3.OperationalError):
            row = conn.execute("SELECT value FROM meta WHERE key = 'monitor.last_success'")
            return row.fetchone() is not None
        return False


def _last_event(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT COALESCE(MAX(id), 0) FROM events WHERE kind = 'registry.production_changed'"
    ).fetchone()
    return int(row[0])


def _moves(home: Path, server: str, n: int, timeout: float, jitter: float = 0.0) -> list[float]:
    """Move the alias n times between v1 and v2; seconds from each move to its history row.
    ``jitter``: wait a random 0..jitter s before each move, so a move falls anywhere in the
    poll cycle (back-to-back moves would each start just after a poll and wait a whole one)."""
    from mlflow import MlflowClient

    client = MlflowClient(server)
    conn = _state(home)
    assert conn is not None
    latencies = []
    with contextlib.closing(conn):
        for i in range(n):
            time.sleep(random.uniform(0.0, jitter))
            seen = _last_event(conn)
            current = client.get_model_version_by_alias(MODEL, "production").version
            client.set_registered_model_alias(MODEL, "production", "1" if current == "2" else "2")
            moved = time.perf_counter()
            deadline = moved + timeout
            while _last_event(conn) == seen:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"move {i + 1}: no history event in {timeout:g} s")
                time.sleep(0.005)
            latencies.append(time.perf_counter() - moved)
    return latencies


def _seed(server: str, idle: int) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(server)
    for name in [MODEL, *(f"idle-{i:04d}" for i in range(idle))]:
        client.create_registered_model(name)
        for _ in range(2):
            client.create_model_version(name, source="s3://bench/model")
        client.set_registered_model_alias(name, "production", "1")


def _latency_rows(report: Report, hooks: list[float], polls: list[float], poll: float) -> None:
    def p95(xs: list[float]) -> float:
        return sorted(xs)[max(0, round(0.95 * len(xs)) - 1)]

    med_h, med_p = statistics.median(hooks), statistics.median(polls)
    report.add(
        "move-to-history-webhooks-median",
        med_h,
        "s",
        anchor_name=f"polling every {poll:g} s, median",
        anchor=med_p,
        target="< 1 s",
        met=med_h < 1.0,
    )
    report.add("move-to-history-webhooks-p95", p95(hooks), "s", target="info")
    report.add("move-to-history-poll-median", med_p, "s", target=f"info (~{poll / 2:g} s)")
    report.add("move-to-history-poll-p95", p95(polls), "s", target="info")


def _calls_per_hour(
    root: Path, server: str, *, webhooks: bool, scale: float, window: float
) -> float:
    """Calls in ``window`` seconds of an idle watcher at intervals / scale, per default hour."""
    with _proxy(server) as proxy:
        home = _config(
            root / ("idle-hooks" if webhooks else "idle-poll"),
            proxy.url,
            webhooks=webhooks,
            poll=POLL_DEFAULT / scale,
            reconcile=RECONCILE_DEFAULT / scale,
        )
        if webhooks:
            _cli(home, "webhooks", "install")
        with _daemon(home):
            time.sleep(RECONCILE_DEFAULT / scale)  # past start-up's first reads and self-test
            before = proxy.count
            time.sleep(window)
            calls = proxy.count - before
        if webhooks:
            _cli(home, "webhooks", "remove")
    return calls * 3600.0 / (window * scale)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--moves", type=int, default=50)
    parser.add_argument("--poll-moves", type=int, default=10)
    parser.add_argument("--poll-interval", type=float, default=POLL_DEFAULT)
    parser.add_argument("--idle-models", type=int, default=300)
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=120.0)
    add_json_arg(parser)
    args = parser.parse_args()
    report = Report("events", vars(args))
    root = Path(tempfile.mkdtemp(prefix="watcher-bench-events-"))
    os.environ.update(WEBHOOK_ENV)  # the server's environment: webhooks to loopback, http
    proc, server = start_server(root)
    try:
        _seed(server, args.idle_models)
        hooks_home = _config(
            root / "hooks", server, webhooks=True, poll=POLL_DEFAULT, reconcile=RECONCILE_DEFAULT
        )
        _cli(hooks_home, "webhooks", "install")
        with _daemon(hooks_home):
            # Moves at random moments, as people make them (a hinted read waits out
            # HINT_MIN_GAP after the previous one: back-to-back moves would measure that).
            hooks = _moves(hooks_home, server, args.moves, 60, HOOK_JITTER)
        _cli(hooks_home, "webhooks", "remove")
        poll_home = _config(
            root / "poll",
            server,
            webhooks=False,
            poll=args.poll_interval,
            reconcile=args.poll_interval,
        )
        with _daemon(poll_home):
            polls = _moves(
                poll_home, server, args.poll_moves, args.poll_interval * 3, args.poll_interval
            )
        _latency_rows(report, hooks, polls, args.poll_interval)
        per_hour = {
            mode: _calls_per_hour(root, server, webhooks=mode, scale=args.scale, window=args.window)
            for mode in (False, True)
        }
        # The self-test runs after SELF_TEST_EVERY without a delivery, unscaled: a scaled
        # window never sees it, so its calls are added as the code budgets them.
        tests = 3600.0 / SELF_TEST_EVERY * SELF_TEST_CALLS
        report.add(
            f"calls-per-hour-{args.idle_models}-idle-webhooks-reconcile-polls",
            per_hour[True],
            "calls",
            target="info (measured, scaled to an hour)",
        )
        report.add(
            f"calls-per-hour-{args.idle_models}-idle-webhooks",
            per_hour[True] + tests,
            "calls",
            anchor_name="30 s polling",
            anchor=per_hour[False],
            target=">= 10x fewer (ratio <= 0.1)",
            met=(per_hour[True] + tests) * 10 <= per_hour[False],
        )
    finally:
        stop_server(proc)
    return report.finish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
