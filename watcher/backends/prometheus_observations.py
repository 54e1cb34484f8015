"""Live metrics from a Prometheus server: instant queries through ``/api/v1/query``.

Per poll and per watched Production version, ``value_query`` then (when it found a
value) ``samples_query``, both at the same evaluation time (the ``time`` parameter),
with ``{model}`` / ``{version}`` / ``{metric}`` filled in (watcher/monitor/promql.py
escapes them). Each answer must be an instant vector of at most one sample:

- no sample, a NaN value (0/0: no traffic) or a count of 0: no observation (no evidence);
- several samples, a value outside the metric's range, a bad count, a time ahead of the
  clock: that version gets no observation from Prometheus, logged once per cause;
- the server unreachable, slow, an HTTP error, ``status: error``, an answer that is not
  the API's JSON: :class:`ObservationsUnavailable` (the monitor's outage: the whole poll's
  observations are left out). Messages name the server by scheme, host and port only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from watcher.errors import ObservationsUnavailable
from watcher.monitor.policy import Observation, observation_fault
from watcher.runtime.logging import get_logger

if TYPE_CHECKING:
    from watcher.config import PrometheusConfig
    from watcher.monitor.promql import Template

SOURCE = "prometheus"
QUERY_PATH = "/api/v1/query"
MAX_BODY = 1 << 20  # bytes of one answer: one sample is ~200; a runaway selector is not read
_ERROR_TEXT = 300  # characters of Prometheus' own error message kept
log = get_logger("watcher.backends.prometheus_observations")
MAX_SKIPPED = 10_000  # unusable observations remembered (each is logged once)


def server_name(url: str) -> str:
    """``https://prom:9090``: what messages call the server (no credentials, no path)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _down(message: str) -> ObservationsUnavailable:
    return ObservationsUnavailable(SOURCE, message)


def parse_vector(key: str, status: int, body: bytes) -> list[tuple[float, float]]:
    """The (timestamp, value) samples of an instant-query answer; ObservationsUnavailable
    for anything but a successful vector (naming the query by its config ``key``)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise _down(f"{key}: HTTP {status}, not the query API's JSON")
    if data.get("status") != "success" or status != 200:
        kind, text = data.get("errorType", "error"), str(data.get("error", ""))[:_ERROR_TEXT]
        raise _down(f"{key}: HTTP {status}, {kind}: {text or 'no message'}")
    result = data.get("data")
    kind = result.get("resultType") if isinstance(result, dict) else None
    if not isinstance(result, dict) or kind != "vector":
        raise _down(f"{key}: expected an instant vector, got {kind or 'no result type'}")
    items = result.get("result")
    if not isinstance(items, list):
        raise _down(f"{key}: the result is not a list of samples")
    samples: list[tuple[float, float]] = []
    for item in items:
        pair = item.get("value") if isinstance(item, dict) else None
        # The query API's own shapes only: Python's float() also takes "0_5" (5.0), and a
        # bool is an int; a sample time of 0 would be an observation from 1970.
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and isinstance(pair[1], str)
            and _PROM_FLOAT.fullmatch(pair[1])
            and _is_time(pair[0])
        ):
            raise _down(f'{key}: a sample is not [time, "value"]')
        samples.append((float(pair[0]), float(pair[1])))
    return samples


_PROM_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN")
_MIN_TIME = 946684800.0  # 2000-01-01: a Prometheus sample time is a recent Unix time


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= _MIN_TIME


def observation(
    metric: str, value: float, count: float, stamp: float, now: datetime
) -> tuple[Observation | None, str | None]:
    """One version's observation from its value and count samples: (None, None) when
    there is no evidence, (None, why) when the numbers are unusable."""
    if math.isnan(value) or count == 0:
        return None, None
    if not math.isfinite(count) or count < 0:
        return None, f"samples: must be a count >= 0, got {count}"
    try:
        at = datetime.fromtimestamp(stamp, UTC)
    except (OverflowError, ValueError, OSError):
        return None, f"at: sample time {stamp} is out of range"
    whole = math.floor(count)  # increase() extrapolates: 99.7 labelled predictions is 99
    if whole == 0:
        return None, None
    fault = observation_fault(value, whole, at, now, metric_name=metric)
    if fault is not None:
        return None, str(fault)
    return Observation(at, value, whole, metric), None


class PrometheusObservations:
    """:class:`watcher.ports.ObservationSource` on a Prometheus server. Used by the poll
    thread only; ``queries`` counts the requests made (for tests and benchmarks)."""

    def __init__(
        self,
        url: str,
        value_query: Template,
        samples_query: Template,
        metric_for: Callable[[str], str],
        *,
        token: str | None = None,
        timeout: float = 10.0,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, follow_redirects=False
        )
        self._templates = {"value_query": value_query, "samples_query": samples_query}
        self._metric_for = metric_for
        self._now = now or (lambda: datetime.now(UTC))
        self.server = server_name(url)
        self.timeout = timeout
        self.queries = 0
        self._skipped: set[tuple[str, str, str]] = set()  # (model, version, why) logged

    @classmethod
    def from_config(
        cls, prom: PrometheusConfig, metric_for: Callable[[str], str]
    ) -> PrometheusObservations:
        assert prom.url is not None  # noqa: S101  (built only when the url is set)
        return cls(
            prom.url,
            prom.template("value_query"),
            prom.template("samples_query"),
            metric_for,
            token=prom.token.get_secret_value() if prom.token else None,
            timeout=prom.timeout,
        )

    def close(self) -> None:
        self._client.close()

    def observations(
        self, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Observation]]:
        now = self._now()
        out: dict[tuple[str, str], list[Observation]] = {}
        for model, version in dict.fromkeys(wanted):
            found, why = self._one(model, version, now)
            out[(model, version)] = [] if found is None else [found]
            if why is not None and (model, version, why) not in self._skipped:
                if len(self._skipped) >= MAX_SKIPPED:  # bounded: forget, say again later
                    self._skipped.clear()
                self._skipped.add((model, version, why))
                log.warning(
                    "observation_skipped", source=SOURCE, model=model, version=version, reason=why
                )
        return out

    def _one(
        self, model: str, version: str, now: datetime
    ) -> tuple[Observation | None, str | None]:
        metric = self._metric_for(model)
        labels = {"model": model, "version": version, "metric": metric}
        value = self._sample("value_query", labels, now)
        if isinstance(value, str) or value is None:
            return None, value
        count = self._sample("samples_query", labels, now)
        if isinstance(count, str) or count is None:
            return None, count
        return observation(metric, value[1], count[1], value[0], now)

    def _sample(
        self, key: str, labels: dict[str, str], now: datetime
    ) -> tuple[float, float] | str | None:
        """The one sample of query ``key``, None without one, or why it is unusable."""
        samples = parse_vector(key, *self._get(key, self._templates[key].render(**labels), now))
        if len(samples) > 1:
            return f"{key}: {len(samples)} series answered, expected one (add labels to select one)"
        return samples[0] if samples else None

    def _get(self, key: str, query: str, now: datetime) -> tuple[int, bytes]:
        params = {"query": query, "time": f"{now.timestamp():.3f}"}
        self.queries += 1
        try:
            with self._client.stream("GET", QUERY_PATH, params=params) as resp:
                body = bytearray()
                for chunk in resp.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY:
                        raise _down(f"{key}: answer larger than {MAX_BODY >> 10} KiB")
                return resp.status_code, bytes(body)
        except httpx.TimeoutException:
            raise _down(f"{self.server} did not answer within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise _down(f"cannot reach {self.server}: {type(exc).__name__}") from None

    def __repr__(self) -> str:
        return f"PrometheusObservations({self.server})"
