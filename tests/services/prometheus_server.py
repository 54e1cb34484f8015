"""A real Prometheus (Debian package) scraping a small test exporter, both on 127.0.0.1.

The exporter is a thread serving the text exposition format; tests set its series
(``model_accuracy{model=…,version=…}``, ``model_predictions_total``…) and wait for a
scrape to show them through the query API. Prometheus scrapes every second, in its own
process group (killed as a group on teardown). ``PrometheusServer`` can be stopped and
started again on the same port and TSDB (an outage test uses its own instance); the
session fixture ``prometheus_server`` is shared and never stopped by a test.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.services.mlflow_server import free_port

BINARY = Path(os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus"))
READY_TIMEOUT_S = 120.0  # ready in ~1 s idle; the box is shared by several test runs
SCRAPE_TIMEOUT_S = 120.0  # the first scrape comes within a second or two, idle

CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: exporter
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


def _label_value(value: str) -> str:
    """A label value in the text exposition format (backslash, quote, newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Exporter:
    """Serves ``/metrics`` from series set by the test (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._series[(name, tuple(sorted(labels.items())))] = value

    def remove(self, name: str, **labels: str) -> None:
        with self._lock:
            self._series.pop((name, tuple(sorted(labels.items()))), None)

    def exposition(self) -> str:
        with self._lock:
            items = sorted(self._series.items())
        lines = []
        for (name, labels), value in items:
            text = ",".join(f'{k}="{_label_value(v)}"' for k, v in labels)
            shown = (
                "NaN"
                if math.isnan(value)
                else repr(value)
                if math.isfinite(value)
                else ("+Inf" if value > 0 else "-Inf")
            )
            lines.append(f"{name}{{{text}}} {shown}")
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class PrometheusServer:
    """A restartable ``prometheus`` on a fixed port and TSDB under ``home``."""

    def __init__(self, home: Path, exporter: Exporter) -> None:
        self.home = home
        self.exporter = exporter
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        (home / "prometheus.yml").write_text(CONFIG.replace("{port}", str(exporter.port)))

    def start(self) -> None:
        with (self.home / "prometheus.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(BINARY),
                    f"--config.file={self.home / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.home / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: teardown kills the group
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready after {READY_TIMEOUT_S}s:\n{self.log()}")

    def log(self) -> str:
        path = self.home / "prometheus.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def query(self, promql: str) -> list[dict[str, object]]:
        resp = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10.0)
        resp.raise_for_status()
        result: list[dict[str, object]] = resp.json()["data"]["result"]
        return result

    def wait_for(
        self, promql: str, check: Callable[[list[float]], bool], what: str = ""
    ) -> list[float]:
        """Wait until the query's sample values pass ``check`` (a scrape has landed)."""
        deadline = time.monotonic() + SCRAPE_TIMEOUT_S
        values: list[float] = []
        while time.monotonic() < deadline:
            values = [float(r["value"][1]) for r in self.query(promql)]  # type: ignore[index]
            if check(values):
                return values
            time.sleep(0.2)
        raise AssertionError(
            f"timed out after {SCRAPE_TIMEOUT_S}s waiting for {what or promql}: last {values}"
        )

    def wait_value(self, promql: str, value: float) -> None:
        self.wait_for(promql, lambda vs: vs == [value], f"{promql} == {value}")


def expose(server: PrometheusServer, name: str, value: float, labels: Mapping[str, str]) -> None:
    """Set one series and wait until Prometheus has scraped that value."""
    server.exporter.set(name, value, **labels)
    selector = ",".join(f'{k}="{_promql_string(v)}"' for k, v in sorted(labels.items()))
    query = f"{name}{{{selector}}}"
    if math.isnan(value):
        server.wait_for(query, lambda vs: len(vs) == 1 and math.isnan(vs[0]), f"{query} NaN")
    else:
        server.wait_value(query, value)


def _promql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _require_binary() -> None:
    if not BINARY.exists():
        pytest.fail(f"{BINARY} not installed: `make system-deps` installs prometheus")


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A running Prometheus scraping its own exporter (shared: never stop it in a test)."""
    _require_binary()
    exporter = Exporter()
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), exporter)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        exporter.close()


@pytest.fixture
def own_prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    """A Prometheus of the test's own, which it may stop and start again."""
    _require_binary()
    exporter = Exporter()
    home = tmp_path / "prometheus"
    home.mkdir()
    server = PrometheusServer(home, exporter)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        exporter.close()
