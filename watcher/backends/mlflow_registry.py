"""The MLflow Model Registry adapter (alias and stage modes).

One ``MlflowClient``, created lazily on first use with a small retry budget
(MLflow's default is 7 retries over ~2 minutes, POSTs included): the daemon
retries per poll cycle itself. One adapter per process, shared by every thread: an
``MlflowClient`` keeps no state between calls (each resolves its store afresh), and
what it does share -- the HTTP session (urllib3's thread-safe pool) and the SQLAlchemy
engine (a session per call) -- MLflow caches per process anyway, so several
clients would isolate nothing. Each call is counted for the thread it runs for.
MLflow exceptions are translated here, at the edge: unreachable →
RegistryUnavailable, anything else → RegistryError.

A poll reads the registry in pages (``snapshot``: 2 calls per 1000 models), not per
model. What is still per item -- the metric histories of runs the live-accuracy reader
must re-read -- goes out ``concurrency`` at a time against an MLflow *server*
(``map``; measured faster than one at a time, benchmarks/poll.py). A local store
(``sqlite:``, a file path) is read one call at a time: it is in-process.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from pipeline.tracking import is_not_found
from watcher.errors import RegistryError, RegistryUnavailable
from watcher.ports import (
    ARCHIVED_STAGE,
    PRODUCTION_ALIAS,
    PRODUCTION_STAGE,
    ModelSnapshot,
    RegistryMode,
    VersionInfo,
    matches,
)
from watcher.runtime import stopping

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from watcher.config import Config

_T = TypeVar("_T")
_R = TypeVar("_R")

_MODELS_PAGE = 1000  # MLflow's maximum for search_registered_models
_VERSIONS_PAGE = 10000


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def is_unavailable(exc: BaseException) -> bool:
    """Connection refused, DNS, timeouts and gateway 5xx: the server is not there right now."""
    for err in _chain(exc):
        if isinstance(err, ConnectionError | TimeoutError):
            return True
        kind = type(err).__name__
        if kind in {"ConnectionError", "ConnectTimeout", "ReadTimeout", "Timeout", "MaxRetryError"}:
            return True
        text = str(err)
        # MLflow's REST layer wraps requests' errors in MlflowException with these phrases.
        if "failed with exception" in text or "Max retries exceeded" in text:
            return True
        if any(f"failed with error code {c}" in text for c in ("502", "503", "504")):
            return True
        if "unable to open database file" in text:
            return True
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@contextlib.contextmanager
def translate_errors(what: str, uri: str = "") -> Iterator[None]:
    """Map any backend exception raised inside to RegistryError / RegistryUnavailable."""
    try:
        yield
    except RegistryError:
        raise
    except Exception as exc:
        where = f" at {uri}" if uri else ""
        if is_unavailable(exc):
            raise RegistryUnavailable(
                f"MLflow unreachable{where} ({what}): {_first_line(exc)}"
            ) from exc
        raise RegistryError(f"MLflow {what} failed{where}: {_first_line(exc)}") from exc


@contextlib.contextmanager
def _stage_api() -> Iterator[None]:
    # Stage mode is a supported product feature; MLflow's deprecation notice is noise here.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*Model registry stages will be removed", category=FutureWarning
        )
        yield


def _version_info(mv: Any) -> VersionInfo:
    return VersionInfo(
        name=str(mv.name),
        version=str(mv.version),
        stage=str(mv.current_stage or "None"),
        tags={str(k): str(v) for k, v in (mv.tags or {}).items()},
        run_id=mv.run_id or None,
        status=str(mv.status or "READY"),
    )


def quote(name: str) -> str:
    """``name`` inside single quotes of an MLflow search filter."""
    return name.replace("\\", "\\\\").replace("'", "\\'")


def mlflow_client(uri: str, timeout: float, max_retries: int) -> MlflowClient:
    """An MlflowClient with a daemon's budget: few retries, short timeouts.

    MLflow's defaults (7 retries, 120 s, POST retried) would stall the loop for
    minutes in an outage; we retry per cycle ourselves instead.
    """
    # Read by MLflow's REST layer per request; set before the first one.
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(max(1, round(timeout)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


class MlflowRegistry:
    """Registry port over ``MlflowClient``; one instance per process, safe across threads."""

    def __init__(
        self,
        tracking_uri: str,
        mode: RegistryMode = "alias",
        *,
        timeout: float = 15.0,
        max_retries: int = 2,
        concurrency: int = 8,
    ) -> None:
        self.uri = tracking_uri
        self.mode: RegistryMode = mode
        self._timeout = timeout
        self._max_retries = max_retries
        remote = tracking_uri.startswith(("http://", "https://", "databricks"))
        self.concurrency = max(1, concurrency) if remote else 1
        self._client: MlflowClient | None = None
        # Two locks: creating the client holds one for the seconds of `import mlflow`; the
        # call counts take the other, so a main-loop call never waits on the poll thread's
        # import outside an interruptible region.
        self._create_lock = threading.Lock()
        self._lock = threading.Lock()
        self._calls: dict[int, int] = {}  # thread id -> MLflow calls made for it
        self._worker = threading.local()  # .owner: the thread a map() worker works for

    @classmethod
    def from_config(cls, config: Config) -> MlflowRegistry:
        """The adapter the ``[mlflow]`` settings describe (app.py and the CLI build one);
        ConfigError when the store needs the [pipeline] extra and this install lacks it."""
        from watcher.extras import require, store_needs

        require(store_needs(config))
        m = config.mlflow
        return cls(
            config.tracking_uri,
            m.registry_mode,
            timeout=m.request_timeout,
            max_retries=m.max_retries,
            concurrency=m.concurrency,
        )

    # Plumbing -------------------------------------------------------------

    @property
    def client(self) -> MlflowClient:
        """The lazily created client; for the adapters in watcher/backends/ only."""
        client = self._client
        if client is None:
            # `import mlflow` takes seconds, and another thread may be doing it: both the
            # wait for the lock and the import give way to a stop signal.
            with stopping.interruptible(), self._create_lock:
                if self._client is None:
                    self._client = mlflow_client(self.uri, self._timeout, self._max_retries)
                client = self._client
        return client

    def _owner(self) -> int:
        owner: int | None = getattr(self._worker, "owner", None)
        return threading.get_ident() if owner is None else owner

    @property
    def calls(self) -> int:
        """MLflow calls made by the calling thread (its map() workers included): a poll's
        count is not mixed with the main loop's calls on the same adapter."""
        with self._lock:
            return self._calls.get(self._owner(), 0)

    def count(self, n: int = 1) -> None:
        owner = self._owner()
        with self._lock:
            self._calls[owner] = self._calls.get(owner, 0) + n

    @contextlib.contextmanager
    def call(self, what: str, *, interruptible: bool = True) -> Iterator[MlflowClient]:
        """The client for one counted call, its errors translated. ``interruptible``: a slow
        MLflow (or `import mlflow` on first use) must not hold up a SIGTERM; on the daemon's
        main thread the call is abandoned (every such caller is crash-safe)."""
        region = stopping.interruptible() if interruptible else contextlib.nullcontext()
        with region, translate_errors(what, self.uri):
            self.count()
            yield self.client

    def map(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``fn`` over ``items``, in order; up to ``concurrency`` calls in flight. The first
        error is raised once the calls already started have returned."""
        if self.concurrency == 1 or len(items) < 2:
            return [fn(item) for item in items]
        self.client  # noqa: B018  (create it once, before the threads race to)
        owner = self._owner()

        def work(item: _T) -> _R:
            self._worker.owner = owner
            return fn(item)

        workers = min(self.concurrency, len(items))
        with ThreadPoolExecutor(workers, thread_name_prefix="mlflow-read") as pool:
            return list(pool.map(work, items))

    # Reading --------------------------------------------------------------

    def _registered_models(self) -> list[Any]:
        out: list[Any] = []
        token: str | None = None
        while True:
            with self.call("search_registered_models") as c:
                page = c.search_registered_models(max_results=_MODELS_PAGE, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def _version_pages(self, filter_string: str | None) -> list[VersionInfo]:
        """Every version the filter selects, page by page, ordered by name and number (a
        stable order: a version updated between two pages does not move between them)."""
        out: list[VersionInfo] = []
        token: str | None = None
        while True:
            with self.call("search_model_versions") as c:
                page = c.search_model_versions(
                    filter_string,
                    max_results=_VERSIONS_PAGE,
                    order_by=["name ASC", "version_number ASC"],
                    page_token=token,
                )
            out.extend(_version_info(mv) for mv in page)
            token = page.token
            if not token:
                return out

    def _search_versions(self, name: str) -> list[VersionInfo]:
        return self._version_pages(f"name = '{quote(name)}'")

    def _production_from(
        self, aliases: Mapping[str, Any], versions: Sequence[VersionInfo]
    ) -> str | None:
        if self.mode == "alias":
            value = aliases.get(PRODUCTION_ALIAS)
            return None if value is None else str(value)
        prod = [v for v in versions if v.stage == PRODUCTION_STAGE]
        # Several Production versions only after a manual mistake: newest wins, as in pipeline/.
        return max(prod, key=lambda v: int(v.version)).version if prod else None

    def snapshot(self, patterns: Sequence[str]) -> list[ModelSnapshot]:
        """1 call per 1000 models (names, aliases) + 1 per 10,000 versions (stages, tags),
        whatever the number of watched models: every version is read afresh each poll, so
        a tag set, a stage moved or a version deleted since the last poll is seen without
        a per-version cache to invalidate. Versions of unwatched models are read too
        (filtered here): one filter per glob would cost a call per pattern."""
        watched = {rm.name: rm for rm in self._registered_models() if matches(rm.name, patterns)}
        if not watched:
            return []
        by_model: dict[str, dict[str, VersionInfo]] = {name: {} for name in watched}
        for v in self._version_pages(None):
            if v.name in by_model:
                by_model[v.name][v.version] = v
        out = []
        for name in sorted(watched):
            versions = by_model[name]
            ordered = sorted(versions.values(), key=lambda v: int(v.version))
            production = self._production_from(watched[name].aliases or {}, ordered)
            out.append(ModelSnapshot(name, production, {v.version: v for v in ordered}))
        return out

    def model_snapshot(self, name: str) -> ModelSnapshot | None:
        """2 calls (+1 per 10,000 versions): the model with its aliases, its versions."""
        try:
            with self.call("get_registered_model") as c:
                rm = c.get_registered_model(name)
        except RegistryError as exc:
            if exc.__cause__ is not None and is_not_found(exc.__cause__):
                return None
            raise
        ordered = self._search_versions(name)  # by version number
        production = self._production_from(rm.aliases or {}, ordered)
        return ModelSnapshot(name, production, {v.version: v for v in ordered})

    def model_exists(self, name: str) -> bool:
        try:
            with self.call("get_registered_model") as c:
                c.get_registered_model(name)
        except RegistryError as exc:
            if exc.__cause__ is not None and is_not_found(exc.__cause__):
                return False
            raise
        return True

    def versions(self, name: str) -> list[VersionInfo]:
        return self._search_versions(name)

    def get_version(self, name: str, version: str) -> VersionInfo | None:
        try:
            with self.call("get_model_version") as c:
                mv = c.get_model_version(name, str(version))
        except RegistryError as exc:
            if exc.__cause__ is not None and is_not_found(exc.__cause__):
                return None
            raise
        return _version_info(mv)

    def production(self, name: str) -> str | None:
        if self.mode == "alias":
            try:
                with self.call("get_model_version_by_alias") as c:
                    mv = c.get_model_version_by_alias(name, PRODUCTION_ALIAS)
            except RegistryError as exc:
                if exc.__cause__ is not None and is_not_found(exc.__cause__):
                    return None
                raise
            return str(mv.version)
        return self._production_from({}, self._search_versions(name))

    # Writing (used by rollback) -------------------------------------------

    def set_production(self, name: str, version: str) -> None:
        if self.mode == "alias":
            with self.call("set_registered_model_alias") as c:
                c.set_registered_model_alias(name, PRODUCTION_ALIAS, str(version))
            return
        # One transaction in MLflow: the new version is Production and the old one archived,
        # so the registry is never without a Production version.
        with self.call("transition_model_version_stage") as c, _stage_api():
            c.transition_model_version_stage(
                name, str(version), PRODUCTION_STAGE, archive_existing_versions=True
            )

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            with self.call("set_model_version_tag") as c:
                c.set_model_version_tag(name, str(version), key, value)

    def delete_tag(self, name: str, version: str, key: str) -> None:
        try:
            with self.call("delete_model_version_tag") as c:
                c.delete_model_version_tag(name, str(version), key)
        except RegistryError as exc:
            if exc.__cause__ is None or not is_not_found(exc.__cause__):
                raise

    def archive(self, name: str, version: str) -> None:
        if self.mode == "alias":
            return
        with self.call("transition_model_version_stage") as c, _stage_api():
            c.transition_model_version_stage(name, str(version), ARCHIVED_STAGE)


@functools.cache
def registry_at(uri: str, mode: RegistryMode = "alias") -> MlflowRegistry:
    """The process's one adapter for ``uri`` with default budgets: for library callers of
    the Python API that name a tracking URI instead of passing an adapter."""
    return MlflowRegistry(uri, mode)
