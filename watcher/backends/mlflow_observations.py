"""Live metrics in MLflow: write observations (report_metric), read them back (FeedbackReader).

One observation = (model, version, metric, value, samples, at). Layout: experiment
``watcher-monitoring``, one run per model version (tags ``watcher.model`` /
``watcher.version``), metrics ``live_<metric>`` (``live_accuracy``, ``live_rmse``…)
and ``live_samples`` logged together with the observation's timestamp and a step
that numbers the observations (so the two series pair up exactly; each step has
one ``live_<metric>``, whichever metric was observed). The run tag
``watcher.observations`` holds the count: the poller sees in one search which
runs changed and fetches histories only for those.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline.metrics import METRICS
from watcher.backends.mlflow_registry import MlflowRegistry, quote, registry_at
from watcher.errors import UsageError
from watcher.monitor.policy import Observation, observation_problem
from watcher.monitor.reports import (
    CLI_NAMES,
    BadReport,
    check_observation,
    resolve_version,
    unknown_model,
    version_fault,
)
from watcher.ports import Logged
from watcher.runtime.logging import get_logger

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from watcher.ports import RegistryMode

EXPERIMENT = "watcher-monitoring"
METRIC_ACCURACY = "live_accuracy"
METRIC_SAMPLES = "live_samples"
# MLflow metric key -> the catalogue metric it holds (live_accuracy -> accuracy).
LIVE_KEYS = {f"live_{name}": name for name in METRICS}
TAG_MODEL = "watcher.model"
TAG_VERSION = "watcher.version"
TAG_COUNT = "watcher.observations"
_RUNS_PAGE = 1000
log = get_logger("watcher.backends.mlflow_observations")


@dataclass(frozen=True, slots=True)
class Reported:
    model: str
    version: str
    metric: str
    value: float
    samples: int
    at: datetime
    run_id: str
    sequence: int  # 0-based number of this observation for the version


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _experiment_id(client: MlflowClient, create: bool) -> str | None:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return str(exp.experiment_id)
    if not create:
        return None
    try:
        return str(client.create_experiment(EXPERIMENT))
    except Exception as exc:  # a concurrent reporter created it first
        if getattr(exc, "error_code", None) != "RESOURCE_ALREADY_EXISTS":
            raise
        again = client.get_experiment_by_name(EXPERIMENT)
        if again is None:
            raise
        return str(again.experiment_id)


def _find_run(client: MlflowClient, experiment_id: str, model: str, version: str) -> Any | None:
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{TAG_MODEL}` = '{quote(model)}' AND tags.`{TAG_VERSION}` = '{quote(version)}'"
        ),
        max_results=1,
    )
    return runs[0] if runs else None


def _resolve_version(registry: MlflowRegistry, model: str, version: str | None) -> str:
    """``version`` (checked to exist), else the current Production: the rules and texts of
    reports.resolve_version, each fault named as the CLI's option."""
    if version is None:
        production = registry.production(model)
        if production is None and not registry.model_exists(model):
            raise BadReport(unknown_model(model), CLI_NAMES)
        return resolve_version(model, None, production, (), CLI_NAMES)
    version = str(version).strip()
    if (fault := version_fault(version)) is not None:
        raise BadReport(fault, CLI_NAMES)
    exists = registry.get_version(model, version) is not None
    if not exists and not registry.model_exists(model):
        raise BadReport(unknown_model(model), CLI_NAMES)
    return resolve_version(model, version, None, [version] if exists else [], CLI_NAMES)


def report_accuracy(
    model: str,
    accuracy: float,
    samples: int,
    *,
    version: str | int | None = None,
    at: datetime | None = None,
    tracking_uri: str | None = None,
    registry_mode: RegistryMode = "alias",
    registry: MlflowRegistry | None = None,
) -> Reported:
    """Log one live-accuracy observation (:func:`report_metric` of ``accuracy``)."""
    return report_metric(
        model,
        "accuracy",
        accuracy,
        samples,
        version=version,
        at=at,
        tracking_uri=tracking_uri,
        registry_mode=registry_mode,
        registry=registry,
    )


def report_metric(
    model: str,
    metric: str,
    value: float,
    samples: int,
    *,
    version: str | int | None = None,
    at: datetime | None = None,
    tracking_uri: str | None = None,
    registry_mode: RegistryMode = "alias",
    registry: MlflowRegistry | None = None,
) -> Reported:
    """Log one live observation of ``metric`` (a name in pipeline/metrics.py);
    ``version`` defaults to the current Production.

    Raises UsageError for bad input (metric, range, unknown model/version) and
    RegistryError / RegistryUnavailable when MLflow fails.
    """
    check_observation(value, samples, metric_name=metric)
    if at is not None and at.tzinfo is None:
        raise UsageError(f"at must be timezone-aware, got {at.isoformat()}")
    if registry is None:
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise UsageError("no MLflow tracking URI: pass tracking_uri or set MLFLOW_TRACKING_URI")
        registry = registry_at(uri, registry_mode)
    when = at or datetime.now(UTC)
    ver = _resolve_version(registry, model, None if version is None else str(version))
    with registry.call(f"report live {metric}", interruptible=False) as client:
        from mlflow.entities import Metric, RunTag

        exp_id = _experiment_id(client, create=True)
        assert exp_id is not None  # noqa: S101  (create=True)
        run = _find_run(client, exp_id, model, ver)
        if run is None:
            run = client.create_run(
                exp_id,
                run_name=f"{model}-v{ver}",
                tags={TAG_MODEL: model, TAG_VERSION: ver, TAG_COUNT: "0"},
            )
            # update_run, not set_terminated: that one prints the run URL to stdout.
            client.update_run(run.info.run_id, status="FINISHED")
        seq = int(run.data.tags.get(TAG_COUNT, "0") or 0)
        ts = _ms(when)
        client.log_batch(
            run.info.run_id,
            metrics=[
                Metric(f"live_{metric}", float(value), ts, seq),
                Metric(METRIC_SAMPLES, float(samples), ts, seq),
            ],
            tags=[RunTag(TAG_COUNT, str(seq + 1))],
        )
    return Reported(model, ver, metric, float(value), samples, when, run.info.run_id, seq)


class MlflowMetricReporter:
    """:class:`watcher.ports.MetricReporter` on the process's MLflow adapter."""

    def __init__(self, registry: MlflowRegistry) -> None:
        self.registry = registry

    def report(
        self, model: str, metric: str, value: float, samples: int, *, version: str, at: datetime
    ) -> Logged:
        done = report_metric(
            model, metric, value, samples, version=version, at=at, registry=self.registry
        )
        return Logged(done.run_id, done.sequence)


def _pair(
    values: Mapping[str, Iterable[Any]], samples: Iterable[Any]
) -> tuple[list[Observation], list[tuple[int, str]]]:
    """Observations from the metric histories (catalogue name -> history of its
    ``live_<metric>``) and the samples history, and (step, why) of each one that cannot be
    used (absurd values written around the CLI), which is left out."""
    by_step = {int(m.step): m for m in samples}
    out: list[Observation] = []
    skipped: list[tuple[int, str]] = []
    for name, history in values.items():
        for m in history:
            s = by_step.get(int(m.step))
            if s is None:
                continue  # half-written observation: the other metric lands on the next poll
            problem = observation_problem(float(m.value), float(s.value), metric_name=name)
            try:
                at = datetime.fromtimestamp(int(m.timestamp) / 1000, UTC)
            except (OverflowError, ValueError, OSError):
                problem = problem or f"timestamp {m.timestamp} ms is out of range"
            if problem is not None:
                skipped.append((int(m.step), problem))
                continue
            out.append(Observation(at, float(m.value), int(s.value), name))
    return sorted(out, key=lambda o: o.at), skipped


def _latest(run: Any) -> dict[str, Any]:
    """The run's latest value of each metric (the highest step: the newest observation), as
    search_runs returns it; through the public proto, the entity keeps them private."""
    return {m.key: m for m in run.data.to_proto().metrics}


@dataclass(frozen=True, slots=True)
class _Read:
    count: str  # the run's observation-count tag when read
    run_id: str
    observations: list[Observation]


class FeedbackReader:
    """Reads observations per (model, version): one search_runs per 1000 runs each poll;
    a run with one new observation since the last poll takes it from that search (its
    latest metrics), and only a run that changed otherwise (first read, several new
    observations) costs two metric-history calls.

    One reader per thread that uses it (its cache is unlocked); the adapter it reads
    through is the process's shared one.
    """

    def __init__(self, registry: MlflowRegistry) -> None:
        self._registry = registry
        self._experiment_id: str | None = None
        self._cache: dict[tuple[str, str], _Read] = {}
        self._skipped: set[tuple[str, int]] = set()  # (run id, step) already reported

    def _runs(self, experiment_id: str) -> list[Any]:
        runs: list[Any] = []
        token: str | None = None
        while True:
            with self._registry.call("search_runs", interruptible=False) as client:
                page = client.search_runs([experiment_id], max_results=_RUNS_PAGE, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _one_more(self, key: tuple[str, str], run: Any, count: str) -> _Read | None:
        """The cached read plus the run's latest observation, when that is the only one
        added since (count one higher, both metrics at its step); None otherwise."""
        cached = self._cache.get(key)
        known = cached.count if cached is not None and cached.run_id == run.info.run_id else "0"
        if not (count.isdigit() and known.isdigit() and int(count) == int(known) + 1):
            return None
        latest = _latest(run)
        step = int(count) - 1
        smp = latest.get(METRIC_SAMPLES)
        at_step = {
            LIVE_KEYS[k]: m for k, m in latest.items() if k in LIVE_KEYS and int(m.step) == step
        }
        if smp is None or int(smp.step) != step or len(at_step) != 1:
            return None
        new, skipped = _pair({n: [m] for n, m in at_step.items()}, [smp])
        self._report_skipped(key, run.info.run_id, skipped)
        before = cached.observations if cached is not None and known != "0" else []
        return _Read(count, run.info.run_id, sorted([*before, *new], key=lambda o: o.at))

    def observations(
        self, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Observation]]:
        wanted_set = set(wanted)
        out: dict[tuple[str, str], list[Observation]] = {k: [] for k in wanted_set}
        if not wanted_set:
            return out
        reg = self._registry
        if self._experiment_id is None:
            with reg.call("get_experiment_by_name", interruptible=False) as client:
                self._experiment_id = _experiment_id(client, create=False)
            if self._experiment_id is None:
                return out  # nobody reported yet
        # key, count tag, run id, the live_<metric> keys the run holds
        changed: list[tuple[tuple[str, str], str, str, list[str]]] = []
        for run in self._runs(self._experiment_id):
            tags = run.data.tags
            key = (tags.get(TAG_MODEL, ""), tags.get(TAG_VERSION, ""))
            if key not in wanted_set:
                continue
            count = tags.get(TAG_COUNT, "")
            cached = self._cache.get(key)
            if cached is None or cached.count != count or cached.run_id != run.info.run_id:
                cached = self._one_more(key, run, count)
            if cached is None:
                keys = sorted(k for k in _latest(run) if k in LIVE_KEYS)
                changed.append((key, count, run.info.run_id, keys))
            else:
                self._cache[key] = cached
                out[key] = cached.observations

        def history(
            run: tuple[str, list[str]],
        ) -> tuple[list[Observation], list[tuple[int, str]]]:
            run_id, keys = run
            values: dict[str, list[Any]] = {}
            for k in keys:
                with reg.call("get_metric_history", interruptible=False) as client:
                    values[LIVE_KEYS[k]] = client.get_metric_history(run_id, k)
            with reg.call("get_metric_history", interruptible=False) as client:
                smp = client.get_metric_history(run_id, METRIC_SAMPLES)
            return _pair(values, smp)

        fetched = reg.map(history, [(run_id, keys) for _, _, run_id, keys in changed])
        for (key, count, run_id, _), (obs, skipped) in zip(changed, fetched, strict=True):
            self._cache[key] = _Read(count, run_id, obs)
            out[key] = obs
            self._report_skipped(key, run_id, skipped)
        for key in list(self._cache):
            if key not in wanted_set:
                del self._cache[key]
        return out

    def _report_skipped(
        self, key: tuple[str, str], run_id: str, skipped: Iterable[tuple[int, str]]
    ) -> None:
        """Log each unusable observation once (histories are re-read as runs grow)."""
        for step, why in skipped:
            if (run_id, step) in self._skipped:
                continue
            self._skipped.add((run_id, step))
            log.warning(
                "observation_skipped",
                model=key[0],
                version=key[1],
                observation=step + 1,
                reason=why,
                run_id=run_id,
            )
