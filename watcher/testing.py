"""Fakes shipped with the code, for tests and demos: a clock you drive, an in-memory
registry and model artifacts, a trigger backend that can be switched off.

FakeRegistry and FakeModels pass the same contract tests as the MLflow adapters
(tests/backends/test_registry_contract.py), so they cannot drift from them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from watcher.errors import (
    ObservationsUnavailable,
    RegistryError,
    RegistryUnavailable,
    UsageError,
)
from watcher.monitor.policy import Observation
from watcher.ports import (
    ARCHIVED_STAGE,
    PRODUCTION_STAGE,
    WEBHOOK_ACTIVE,
    WEBHOOK_EVENTS,
    LoadedModel,
    ModelSnapshot,
    RegistryMode,
    SubmitResult,
    Trigger,
    TriggerUnavailable,
    VersionInfo,
    WebhookInfo,
    WebhookTest,
    matches,
)

if TYPE_CHECKING:
    from pipeline.profile import Profile


class FakeClock:
    """A thread-safe clock that moves only when told (``wait`` advances it too)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 1000.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds

    def wait(self, stop: threading.Event, seconds: float) -> bool:
        if stop.is_set():
            return True
        self.advance(max(0.0, seconds))
        return stop.is_set()


class FakeRegistry:
    """In-memory Registry port; ``down = True`` makes every call raise RegistryUnavailable."""

    def __init__(self, mode: RegistryMode = "alias") -> None:
        self.mode: RegistryMode = mode
        self.down = False
        self.calls = 0
        self._models: dict[str, dict[str, VersionInfo]] = {}
        self._production: dict[str, str] = {}

    def _enter(self) -> None:
        self.calls += 1
        if self.down:
            raise RegistryUnavailable("MLflow unreachable (fake registry is down)")

    # Test setup -----------------------------------------------------------

    def create_version(self, name: str, tags: Mapping[str, str] | None = None) -> str:
        versions = self._models.setdefault(name, {})
        version = str(max((int(v) for v in versions), default=0) + 1)
        versions[version] = VersionInfo(name, version, tags=dict(tags or {}))
        return version

    def delete_version(self, name: str, version: str) -> None:
        self._models[name].pop(version)
        if self._production.get(name) == version:
            del self._production[name]

    def delete_model(self, name: str) -> None:
        self._models.pop(name)
        self._production.pop(name, None)

    # The port ---------------------------------------------------------------

    def snapshot(self, patterns: Sequence[str]) -> list[ModelSnapshot]:
        self._enter()
        return [
            ModelSnapshot(name, self._production.get(name), dict(versions))
            for name, versions in sorted(self._models.items())
            if matches(name, patterns)
        ]

    def model_snapshot(self, name: str) -> ModelSnapshot | None:
        self._enter()
        versions = self._models.get(name)
        if versions is None:
            return None
        return ModelSnapshot(name, self._production.get(name), dict(versions))

    def model_exists(self, name: str) -> bool:
        self._enter()
        return name in self._models

    def versions(self, name: str) -> list[VersionInfo]:
        self._enter()
        return sorted(self._models.get(name, {}).values(), key=lambda v: int(v.version))

    def get_version(self, name: str, version: str) -> VersionInfo | None:
        self._enter()
        return self._models.get(name, {}).get(str(version))

    def production(self, name: str) -> str | None:
        self._enter()
        return self._production.get(name)

    def _require(self, name: str, version: str) -> VersionInfo:
        info = self._models.get(name, {}).get(str(version))
        if info is None:
            raise RegistryError(f"MLflow: model {name!r} has no version {version}")
        return info

    def set_production(self, name: str, version: str) -> None:
        self._enter()
        info = self._require(name, version)
        old = self._production.get(name)
        self._production[name] = info.version
        if self.mode == "stage":
            versions = self._models[name]
            if old is not None and old != info.version:
                versions[old] = replace(versions[old], stage=ARCHIVED_STAGE)
            versions[info.version] = replace(info, stage=PRODUCTION_STAGE)

    def set_tags(self, name: str, version: str, tags: Mapping[str, str]) -> None:
        self._enter()
        info = self._require(name, version)
        self._models[name][info.version] = replace(info, tags={**info.tags, **tags})

    def delete_tag(self, name: str, version: str, key: str) -> None:
        self._enter()
        info = self._require(name, version)
        self._models[name][info.version] = replace(
            info, tags={k: v for k, v in info.tags.items() if k != key}
        )

    def archive(self, name: str, version: str) -> None:
        self._enter()
        info = self._require(name, version)
        if self.mode == "stage":
            self._models[name][info.version] = replace(info, stage=ARCHIVED_STAGE)
            if self._production.get(name) == info.version:
                del self._production[name]


class FakeWebhooks:
    """In-memory RegistryWebhooks; ``deliver(url)`` plays MLflow's test delivery (the
    receiver's HTTP status, or raises OSError when unreachable); ``down`` like FakeRegistry."""

    def __init__(self, deliver: Callable[[str], int] | None = None) -> None:
        self.deliver = deliver
        self.down = False
        self.calls = 0
        self.hooks: dict[str, WebhookInfo] = {}

    def _enter(self) -> None:
        self.calls += 1
        if self.down:
            raise RegistryUnavailable("MLflow unreachable (fake webhooks are down)")

    def find(self, url: str) -> WebhookInfo | None:
        self._enter()
        return next((h for h in self.hooks.values() if h.url == url), None)

    def install(self, url: str, secret: str) -> tuple[WebhookInfo, bool]:
        found = self.find(url)
        hook_id = found.webhook_id if found is not None else f"wh-{len(self.hooks) + 1}"
        self.hooks[hook_id] = WebhookInfo(
            hook_id, "registry-watcher", url, WEBHOOK_EVENTS, WEBHOOK_ACTIVE
        )
        return self.hooks[hook_id], found is None

    def test(self, webhook_id: str) -> WebhookTest:
        self._enter()
        hook = self.hooks.get(webhook_id)
        if hook is None:
            raise RegistryError(f"MLflow: no webhook {webhook_id}")
        if self.deliver is None:
            return WebhookTest(True, 200, None)
        try:
            status = self.deliver(hook.url)
        except OSError as exc:
            return WebhookTest(False, None, f"Failed to test webhook: {exc!r}")
        return WebhookTest(status < 400, status, None)

    def remove(self, url: str) -> list[str]:
        self._enter()
        gone = [i for i, h in self.hooks.items() if h.url == url]
        for hook_id in gone:
            del self.hooks[hook_id]
        return gone


class FakeModels:
    """In-memory ModelArtifacts over a FakeRegistry (its versions; down when it is down).

    Set up with ``profiles[(name, version)]``, ``models[(name, version)]`` and
    ``run_accuracy[trigger run id]``.
    """

    def __init__(self, registry: FakeRegistry) -> None:
        self.registry = registry
        self.profiles: dict[tuple[str, str], Profile] = {}
        self.models: dict[tuple[str, str], LoadedModel] = {}
        self.run_accuracy: dict[str, float] = {}

    def training_profile(self, name: str, version: str) -> Profile | None:
        if self.registry.get_version(name, version) is None:
            raise UsageError(f"model {name!r} version {version} not found")
        return self.profiles.get((name, str(version)))

    def triggered_run_accuracy(self, run_id: str) -> float | None:
        self.registry._enter()
        return self.run_accuracy.get(run_id)

    def load_model(self, name: str, version: str) -> LoadedModel:
        self.registry._enter()
        found = self.models.get((name, str(version)))
        if found is None:
            raise RegistryError(f"MLflow load model {name} v{version} failed: no such model")
        return found


class MemoryObservations:
    """An observation source backed by a dict (what FeedbackReader reads from MLflow);
    while ``down`` holds a reason, reading it is an outage of source ``name``."""

    def __init__(self, name: str = "memory") -> None:
        self.data: dict[tuple[str, str], list[Observation]] = {}
        self.name = name
        self.down: str | None = None
        self.reads = 0

    def add(
        self,
        model: str,
        version: str,
        value: float,
        samples: int,
        at: datetime,
        metric: str = "accuracy",
    ) -> None:
        self.data.setdefault((model, version), []).append(Observation(at, value, samples, metric))

    def observations(
        self, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Observation]]:
        self.reads += 1
        if self.down is not None:
            raise ObservationsUnavailable(self.name, self.down)
        return {k: list(self.data.get(k, [])) for k in wanted}


class OutageTrigger:
    """Wraps a real trigger backend; while ``down`` every submit is a retryable outage."""

    def __init__(self, inner: Trigger) -> None:
        self.inner = inner
        self.serial = inner.serial
        self.down = False
        self.refused = 0

    @property
    def dag_id(self) -> str | None:
        return self.inner.dag_id

    @property
    def base_url(self) -> str | None:
        return self.inner.base_url

    def submit(self, run_id: str, conf: Mapping[str, Any]) -> SubmitResult:
        if self.down:
            self.refused += 1
            raise TriggerUnavailable("connection refused (injected outage)")
        return self.inner.submit(run_id, conf)

    def run_state(self, run_id: str) -> str | None:
        return self.inner.run_state(run_id)

    def is_paused(self) -> bool | None:
        return self.inner.is_paused()

    def cancel(self, run_id: str) -> None:
        self.inner.cancel(run_id)

    def exit_code(self, run_id: str) -> int | None:
        return self.inner.exit_code(run_id)

    def summary(self, run_id: str) -> dict[str, Any] | None:
        return self.inner.summary(run_id)

    def close(self) -> None:
        self.inner.close()
