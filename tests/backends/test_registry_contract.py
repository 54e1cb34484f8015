"""One contract for the Registry port: the MLflow adapter (in-process SQLite) and FakeRegistry."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.services.mlflow_server import free_port
from watcher.backends.mlflow_registry import MlflowRegistry
from watcher.errors import RegistryError, RegistryUnavailable
from watcher.ports import Registry, RegistryMode, quarantine_tags
from watcher.testing import FakeRegistry

Create = Callable[[str, dict[str, str] | None], str]
_names = itertools.count(1)


@pytest.fixture(scope="module")
def sqlite_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One in-process SQLite registry per module (table creation costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('registry') / 'mlflow.db'}"


@pytest.fixture(params=["fake-alias", "fake-stage", "mlflow-alias", "mlflow-stage"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Registry, Create]:
    kind, mode_text = str(request.param).split("-")
    mode: RegistryMode = "alias" if mode_text == "alias" else "stage"
    if kind == "fake":
        fake = FakeRegistry(mode)
        return fake, fake.create_version
    reg = MlflowRegistry(request.getfixturevalue("sqlite_uri"), mode, max_retries=0)

    def create(name: str, tags: dict[str, str] | None) -> str:
        client: Any = reg.client
        if not reg.model_exists(name):
            client.create_registered_model(name)
        mv = client.create_model_version(name, source=str(tmp_path / "model"), tags=tags or {})
        return str(mv.version)

    return reg, create


def unique(prefix: str = "iris") -> str:
    return f"{prefix}-{next(_names)}"


def test_versions_are_strings_and_production_starts_empty(subject: tuple[Registry, Create]) -> None:
    """New versions are numbered "1", "2"…; no Production until one is set."""
    reg, create = subject
    name = unique()
    assert ["1", "2"] == [create(name, {"data_hash": "abc"}), create(name, None)]
    assert None is reg.production(name)
    assert ["1", "2"] == [v.version for v in reg.versions(name)]
    assert "abc" == reg.versions(name)[0].tags["data_hash"]


def test_set_production_moves_it(subject: tuple[Registry, Create]) -> None:
    """set_production is visible through production() and snapshot(); stage mode archives."""
    reg, create = subject
    name = unique()
    create(name, None)
    create(name, None)
    reg.set_production(name, "1")
    reg.set_production(name, "2")
    assert "2" == reg.production(name)
    (snap,) = reg.snapshot([name])
    assert "2" == snap.production
    expected_v1 = "Archived" if reg.mode == "stage" else "None"
    assert expected_v1 == snap.versions["1"].stage


def test_snapshot_matches_names_and_globs(subject: tuple[Registry, Create]) -> None:
    """Patterns are exact names or shell globs; other models are left out."""
    reg, create = subject
    prefix = unique("glob")
    for suffix in ("a", "b"):
        create(f"{prefix}-{suffix}", None)
    create(f"other-{prefix}", None)
    assert [f"{prefix}-a", f"{prefix}-b"] == [s.name for s in reg.snapshot([f"{prefix}-*"])]
    assert [f"{prefix}-b"] == [s.name for s in reg.snapshot([f"{prefix}-b"])]


def test_missing_things_are_none_not_errors(subject: tuple[Registry, Create]) -> None:
    """Unknown model or version: False / None / [] (callers turn it into exit 2)."""
    reg, create = subject
    name = unique()
    assert reg.model_exists(name) is False
    assert [] == reg.versions(name)
    assert None is reg.production(name)
    create(name, None)
    assert reg.model_exists(name) is True
    assert None is reg.get_version(name, "9")


def test_quarantine_tags_round_trip(subject: tuple[Registry, Create]) -> None:
    """Quarantine tags mark a version; deleting the tag clears it."""
    reg, create = subject
    name = unique()
    version = create(name, None)
    reg.set_tags(name, version, quarantine_tags("accuracy 0.5", datetime.now(UTC), "watcher"))
    info = reg.get_version(name, version)
    assert info is not None and info.quarantined
    assert "accuracy 0.5" == info.tags["watcher.rollback_reason"]
    reg.delete_tag(name, version, "watcher.quarantined")
    info = reg.get_version(name, version)
    assert info is not None and not info.quarantined


def test_set_production_of_unknown_version_fails(subject: tuple[Registry, Create]) -> None:
    """Moving Production to a version that does not exist is a RegistryError."""
    reg, create = subject
    name = unique()
    create(name, None)
    with pytest.raises(RegistryError):
        reg.set_production(name, "7")


def test_unreachable_server_is_registry_unavailable() -> None:
    """Connection refused surfaces as RegistryUnavailable, quickly (small retry budget)."""
    reg = MlflowRegistry(f"http://127.0.0.1:{free_port()}", max_retries=0, timeout=2)
    with pytest.raises(RegistryUnavailable, match="MLflow unreachable"):
        reg.snapshot(["*"])


def test_fake_down_is_registry_unavailable() -> None:
    """The fake fails the same way when told the backend is down."""
    fake = FakeRegistry()
    fake.down = True
    with pytest.raises(RegistryUnavailable):
        fake.production("x")


@pytest.mark.service
def test_concurrent_poll_reads_equal_sequential_ones(mlflow_server: str) -> None:
    """Against a real server the per-model reads go out in parallel: same snapshot, same
    observations, the same number of calls as one at a time (1 listing + 1 per model)."""
    from watcher.backends.mlflow_observations import FeedbackReader, report_accuracy

    prefix = unique("par")
    setup = MlflowRegistry(mlflow_server, max_retries=0)
    client: Any = setup.client
    for i in range(12):
        name = f"{prefix}-{i:02d}"
        client.create_registered_model(name)
        for _ in range(2):
            client.create_model_version(name, source="s3://bench/model")
        if i % 3:
            setup.set_production(name, str(1 + i % 2))
            report_accuracy(name, 0.5 + i / 100, 100 + i, registry=setup)
    results = []
    for concurrency in (1, 8):
        reg = MlflowRegistry(mlflow_server, max_retries=0, concurrency=concurrency)
        assert concurrency == reg.concurrency
        snaps = reg.snapshot([f"{prefix}-*"])
        assert 1 + 12 == reg.calls
        wanted = [(s.name, s.production) for s in snaps if s.production is not None]
        obs = FeedbackReader(reg).observations(wanted)
        assert 8 == len(wanted) == len([k for k, v in obs.items() if v])
        results.append((snaps, {k: [(o.accuracy, o.samples) for o in v] for k, v in obs.items()}))
    assert results[0] == results[1]


def test_a_local_store_is_read_one_call_at_a_time_and_errors_surface(sqlite_uri: str) -> None:
    assert 1 == MlflowRegistry(sqlite_uri, concurrency=8).concurrency
    reg = MlflowRegistry(f"http://127.0.0.1:{free_port()}", concurrency=4)
    assert [0, 2, 4] == reg.map(lambda i: 2 * i, [0, 1, 2])

    def fail_on_3(i: int) -> int:
        if i == 3:
            raise RegistryError(f"version {i} is bad")
        return i

    with pytest.raises(RegistryError, match="version 3 is bad"):
        reg.map(fail_on_3, list(range(8)))
