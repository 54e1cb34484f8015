"""The built-in evaluator: score Production on labelled feedback files, log its live metric.

``monitor.feedback_dir`` holds CSV (or Parquet) files with the model's feature
columns and the true ``pipeline.target_column``. It is watched like the data
dir (FsWatch hints + the incremental hasher as the truth). When its content
changes, the *new* rows are scored with the current Production version of
``pipeline.model_name`` and one observation of the metric monitored for that
model (``monitor.metric`` or its override: accuracy, f1_score, rmse, mae, r2;
samples = rows scored) goes to MLflow through the :class:`watcher.ports.MetricReporter`
(the MLflow one in ``watcher/backends/mlflow_observations.py``).

"New" is decided from the state DB: content (SHA-256) already scored is never
scored again, whatever its name (copies, renames); a CSV that grew by appended
lines is scored from the first new row; any other changed file is scored whole.
A bad file is logged once per content (naming file, column and row) and
skipped; a registry outage or a missing Production version leaves the work
pending and retried every ``monitor.poll_interval``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import DataValidationError
from pipeline.lineage import DatasetPathError, FileEntry
from pipeline.metrics import metric as catalogue
from watcher.data.tree import WatchedTree
from watcher.errors import WatcherError
from watcher.runtime.clock import Clock, SystemClock
from watcher.runtime.component import Health
from watcher.runtime.logging import get_logger
from watcher.runtime.state import iso

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

    from watcher.config import Config
    from watcher.ports import LoadedModel, MetricReporter, ModelArtifacts, Registry
    from watcher.runtime.state import StateStore

log = get_logger("watcher.monitor.evaluator")

FEEDBACK_SUFFIXES = (".csv", ".parquet", ".pq")


# Pure decisions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scored:
    """What the state DB knows about the content last scored at one path."""

    sha256: str
    size: int
    rows: int


@dataclass(frozen=True, slots=True)
class Work:
    """A feedback file whose current content has not been scored."""

    path: str
    sha256: str
    size: int
    previous: Scored | None  # the content scored at this path before (append detection)


@dataclass(frozen=True, slots=True)
class Plan:
    work: tuple[Work, ...]
    # Paths whose content was scored under another name (copy, rename): remembered, not scored.
    known: tuple[tuple[str, Scored], ...]


def is_feedback_file(path: str) -> bool:
    return path.lower().endswith(FEEDBACK_SUFFIXES)


def plan(
    entries: Iterable[FileEntry],
    files: Mapping[str, Scored],
    scored_rows: Mapping[str, int],
    skip: Mapping[str, str],
) -> Plan:
    """Which files need scoring, from the manifest and what was scored before.

    ``files``: path → content last scored there; ``scored_rows``: content hash →
    rows, for every content ever scored; ``skip``: path → hash of known-bad content.
    """
    work: list[Work] = []
    known: list[tuple[str, Scored]] = []
    for e in entries:
        if not is_feedback_file(e.path):
            continue
        at = files.get(e.path)
        if at is not None and at.sha256 == e.sha256:
            continue
        rows = scored_rows.get(e.sha256)
        if rows is not None:
            known.append((e.path, Scored(e.sha256, e.size, rows)))
            continue
        if skip.get(e.path) == e.sha256:
            continue
        work.append(Work(e.path, e.sha256, e.size, at))
    return Plan(tuple(work), tuple(known))


def already_scored_rows(work: Work, data: bytes) -> int:
    """Rows of ``data`` scored before: the old rows when a CSV only grew by whole lines."""
    prev = work.previous
    if prev is None or not work.path.lower().endswith(".csv"):
        return 0
    if prev.size <= 0 or len(data) <= prev.size or data[prev.size - 1 : prev.size] != b"\n":
        return 0
    if hashlib.sha256(data[: prev.size]).hexdigest() != prev.sha256:
        return 0
    return prev.rows


def _label_key(value: object) -> str:
    """Labels compare by value: 1, 1.0, "1" and numpy's 1 are one class."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else repr(number)


def count_correct(predicted: Iterable[object], actual: Iterable[object]) -> int:
    return sum(_label_key(p) == _label_key(a) for p, a in zip(predicted, actual, strict=True))


def score(metric_name: str, actual: Sequence[object], predicted: Sequence[object]) -> float:
    """The value of ``metric_name`` (pipeline/metrics.py) over scored rows, as training
    computes it (f1_score: macro average). Regression truth is numeric (see
    :func:`numeric_truth`)."""
    n = len(actual)
    if metric_name == "accuracy":
        return count_correct(predicted, actual) / n
    if metric_name == "f1_score":
        from sklearn.metrics import f1_score

        keys = [_label_key(a) for a in actual], [_label_key(p) for p in predicted]
        return float(f1_score(*keys, average="macro"))
    y = [float(a) for a in actual]  # type: ignore[arg-type]
    errors = [float(p) - t for p, t in zip(predicted, y, strict=True)]  # type: ignore[arg-type]
    sse = sum(e * e for e in errors)
    if metric_name == "rmse":
        return math.sqrt(sse / n)
    if metric_name == "mae":
        return sum(abs(e) for e in errors) / n
    if metric_name == "r2":
        mean = sum(y) / n
        sst = sum((t - mean) ** 2 for t in y)
        # Constant truth: perfect or nothing (scikit-learn's force_finite convention).
        return 1 - sse / sst if sst else (1.0 if sse == 0 else 0.0)
    raise ValueError(f"no live scoring for metric {metric_name!r}")


def numeric_truth(rel: str, column: str, labels: Sequence[object], start: int) -> list[float]:
    """Regression truth as numbers; DataValidationError naming file, column and row (the
    data row, 1-based, counting from the file's first) of the first that is not one."""
    out: list[float] = []
    for i, v in enumerate(labels):
        try:
            value = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            row = start + i + 1
            raise DataValidationError(
                f"target value {v!r} at data row {row} is not a finite number "
                "(the monitored metric is a regression metric)",
                file=rel,
                column=column,
                row=row,
            )
        out.append(value)
    return out


# Model loading -------------------------------------------------------------------


# The component -------------------------------------------------------------------


@dataclass
class _Status:
    pending_files: int = 0
    last_scan_at: datetime | None = None
    last_error: str | None = None
    observations: int = 0
    last_observation: dict[str, object] | None = None
    bad_files: dict[str, str] = field(default_factory=dict)  # path -> error


@dataclass(frozen=True, slots=True)
class _FileScore:
    work: Work
    rows: int  # data rows in the file's current content
    scored: int  # new rows scored now
    actual: tuple[object, ...]  # the new rows' truth …
    predicted: tuple[object, ...]  # … and what the model said


_UPSERT_FILE = (
    "INSERT INTO feedback_files (path, sha256, size, rows) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(path) DO UPDATE SET sha256 = excluded.sha256, "
    "size = excluded.size, rows = excluded.rows"
)


class ScoredFiles:
    """What was scored: content (by SHA-256) and the content last scored at each path.
    The only SQL on the ``feedback_files`` and ``feedback_scored`` tables."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def load(self) -> tuple[dict[str, Scored], dict[str, int]]:
        """Path → content last scored there; content hash → rows, for every content."""
        conn = self.state.conn
        files = {
            path: Scored(sha, size, rows)
            for path, sha, size, rows in conn.execute(
                "SELECT path, sha256, size, rows FROM feedback_files"
            )
        }
        rows = dict(conn.execute("SELECT sha256, rows FROM feedback_scored").fetchall())
        return files, rows

    def remember(self, known: Sequence[tuple[str, Scored]]) -> None:
        """Content scored under another name now lives (also) at these paths."""
        with self.state.transaction() as tx:
            tx.executemany(_UPSERT_FILE, [(path, s.sha256, s.size, s.rows) for path, s in known])

    def mark(self, scores: Sequence[_FileScore], model: str, version: str, now: datetime) -> None:
        at = iso(now)
        with self.state.transaction() as tx:
            tx.executemany(
                "INSERT OR IGNORE INTO feedback_scored "
                "(sha256, path, rows, model, version, scored_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(s.work.sha256, s.work.path, s.rows, model, version, at) for s in scores],
            )
            tx.executemany(
                _UPSERT_FILE, [(s.work.path, s.work.sha256, s.work.size, s.rows) for s in scores]
            )


class Evaluator:
    """Daemon component; all work (hashing, model loading, scoring) happens in :meth:`tick`."""

    name = "evaluator"

    def __init__(
        self,
        config: Config,
        state: StateStore,
        *,
        clock: Clock | None = None,
        registry: Registry,
        models: ModelArtifacts,
        reporter: MetricReporter,
        observer_factory: Callable[[], BaseObserver] | None = None,
    ) -> None:
        if config.monitor.feedback_dir is None:
            raise WatcherError("the evaluator needs monitor.feedback_dir")
        w = config.watch
        self.state = state
        self.clock: Clock = clock or SystemClock()
        self.root = Path(config.monitor.feedback_dir).absolute()
        self.model_name = config.pipeline.model_name
        self.target = config.pipeline.target_column
        self.metric = config.monitor.policy_for(self.model_name).metric
        self.regression = catalogue(self.metric).task == "regression"
        self.registry = registry
        self.models = models
        self.reporter = reporter
        self.tree = WatchedTree(self.root, state, w, self.clock, observer_factory, progress=False)
        self.hasher, self.fs = self.tree.hasher, self.tree.fs
        self.quiet_period = w.quiet_period
        self.retry_interval = config.monitor.poll_interval
        self.status = _Status()
        self._model: LoadedModel | None = None
        self._bad: dict[str, str] = {}  # path -> sha256 of content known to be bad
        self.scored = ScoredFiles(state)

    # Component protocol --------------------------------------------------------

    def start(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._error(f"{self.root}: cannot create the feedback dir: {exc.strerror or exc}")
        # Scans at once: feedback may have arrived while the daemon was down.
        if not self.tree.start():
            log.warning("feedback_dir_missing", feedback_dir=str(self.root), hint="waiting for it")

    def stop(self) -> None:
        self.tree.stop()

    def health(self) -> Health:
        st = self.status
        detail: dict[str, object] = {
            "feedback_dir": str(self.root),
            "model": self.model_name,
            "metric": self.metric,
            "watch_mode": self.fs.active_mode,
            "pending_files": st.pending_files,
            "observations": st.observations,
            "last_scan_at": st.last_scan_at,
        }
        if self._model is not None:
            detail["model_version"] = self._model.version
        if st.last_observation is not None:
            detail["last_observation"] = st.last_observation
        if st.last_error:
            detail["error"] = st.last_error
        if st.bad_files:
            detail["bad_files"] = dict(st.bad_files)
        # Bad files and MLflow outages are not fixed by a restart: only a dead watch is unhealthy.
        return Health(self.name, self.fs.watching or not self.root.exists(), detail)

    def tick(self) -> float:
        if self.tree.due() is not None:
            try:
                self._scan()
            except Exception as exc:  # never take the loop down; retry later, show in health
                log.exception("evaluator_failed", error=str(exc))
                self._error(f"evaluation failed: {type(exc).__name__}: {exc}")
                self.tree.retry_in(self.retry_interval)
        return self.tree.wait()

    # Scanning ------------------------------------------------------------------

    def _error(self, message: str) -> None:
        if message != self.status.last_error:
            log.error("feedback_not_scored", feedback_dir=str(self.root), error=message)
            self.state.record("feedback.error", message, model=self.model_name)
        self.status.last_error = message

    def _scan(self) -> None:
        if not self.root.is_dir():
            return
        try:
            result = self.hasher.scan()
        except DatasetPathError as exc:
            self._error(f"{self.root}/{exc}")
            return
        except FileNotFoundError:
            self.tree.retry_in(self.quiet_period)
            return
        if not result.settled:
            self.tree.retry_in(self.quiet_period)
            return
        self.status.last_scan_at = self.clock.now()
        files, scored_rows = self.scored.load()
        p = plan(result.manifest.entries, files, scored_rows, self._bad)
        if p.known:
            self.scored.remember(p.known)
            log.info("feedback_already_scored", files=[path for path, _ in p.known])
        present = {e.path for e in result.manifest.entries}
        for gone in [path for path in self.status.bad_files if path not in present]:
            del self.status.bad_files[gone]
            self._bad.pop(gone, None)
        self.status.pending_files = len(p.work)
        if p.work:
            self._score(p.work)

    def _production_model(self) -> LoadedModel | None:
        version = self.registry.production(self.model_name)
        if version is None:
            return None
        if self._model is None or self._model.version != version:
            started = self.clock.monotonic()
            self._model = self.models.load_model(self.model_name, version)
            log.info(
                "evaluator_model_loaded",
                model=self.model_name,
                version=version,
                seconds=round(self.clock.monotonic() - started, 3),
            )
        return self._model

    def _score(self, work: Sequence[Work]) -> None:
        model = self._model_or_wait(len(work))
        if model is None:
            return
        scores = [s for w in work if (s := self._score_file(w, model)) is not None]
        done = {s.work.path for s in scores}
        self.status.pending_files = sum(
            1 for w in work if w.path not in done and self._bad.get(w.path) != w.sha256
        )
        samples = sum(s.scored for s in scores)
        if samples:
            self._report(scores, model.version, samples)
        elif scores:
            self.scored.mark(scores, self.model_name, model.version, self.clock.now())

    def _model_or_wait(self, waiting: int) -> LoadedModel | None:
        """The Production model; None (the work retried later) when there is none yet."""
        try:
            model = self._production_model()
        except WatcherError as exc:
            self._error(f"cannot load the Production model of {self.model_name!r}: {exc}")
            self.tree.retry_in(self.retry_interval)
            return None
        if model is None:
            self._error(
                f"{self.model_name!r} has no Production version: "
                f"{waiting} feedback file(s) wait to be scored"
            )
            self.tree.retry_in(self.retry_interval)
        return model

    def _report(self, scores: Sequence[_FileScore], version: str, samples: int) -> None:
        """One observation for the new rows of ``scores``, then their bookkeeping."""
        actual = [a for s in scores for a in s.actual]
        value = score(self.metric, actual, [p for s in scores for p in s.predicted])
        now = self.clock.now()
        try:
            reported = self.reporter.report(
                self.model_name, self.metric, value, samples, version=version, at=now
            )
        except WatcherError as exc:
            self._error(f"cannot log the live {self.metric} of {self.model_name!r}: {exc}")
            self.tree.retry_in(self.retry_interval)
            return
        # Observation first, then the bookkeeping: a crash in between rescores these rows
        # once (a duplicate observation) rather than losing them.
        self.scored.mark(scores, self.model_name, version, now)
        st = self.status
        st.last_error = None
        st.observations += 1
        observed = {"version": version, self.metric: round(value, 6), "samples": samples}
        st.last_observation = {**observed, "at": iso(now)}
        paths = [s.work.path for s in scores if s.scored]
        message = (
            f"{self.model_name} v{version}: live {self.metric} {value:.4f} on {samples} "
            f"new feedback row(s) from {', '.join(paths)}"
        )
        payload = {"metric": self.metric, self.metric: value, "samples": samples, "files": paths}
        self.state.record(
            "feedback.scored",
            message,
            model=self.model_name,
            version=version,
            payload={**payload, "run_id": reported.run_id, "sequence": reported.sequence},
        )
        log.info("feedback_scored", model=self.model_name, **observed, files=paths)

    def _score_file(self, w: Work, model: LoadedModel) -> _FileScore | None:
        from pipeline.data import load_labelled_file

        try:
            data = (self.root / w.path).read_bytes()
        except OSError:
            self.tree.retry_in(self.quiet_period)
            return None
        if hashlib.sha256(data).hexdigest() != w.sha256:
            # Changed since it was hashed: the next scan sees the new content.
            self.tree.retry_in(self.quiet_period)
            return None
        try:
            x, y = load_labelled_file(w.path, data, target=self.target, features=model.features)
            start = already_scored_rows(w, data)
            x_new, y_new = x.iloc[start:], y.iloc[start:]
            actual: Sequence[object] = list(y_new)
            if self.regression:
                actual = numeric_truth(w.path, self.target, actual, start)
            predicted = list(model.model.predict(x_new)) if len(x_new) else []
        except DataValidationError as exc:
            self._bad_file(w, str(exc))
            return None
        except Exception as exc:  # the model refused these rows: a problem of this file
            self._bad_file(w, f"file {w.path!r}: model v{model.version} cannot score it: {exc}")
            return None
        self.status.bad_files.pop(w.path, None)
        return _FileScore(w, len(y), len(y_new), tuple(actual), tuple(predicted))

    def _bad_file(self, w: Work, message: str) -> None:
        self._bad[w.path] = w.sha256
        self.status.bad_files[w.path] = message
        log.error(
            "feedback_file_invalid",
            feedback_dir=str(self.root),
            file=w.path,
            error=message,
            hint="fix or remove the file; it is skipped until its content changes",
        )
        self.state.record("feedback.invalid", f"{self.root}: {message}", model=self.model_name)
