"""One contract per MLflow port: Registry (the MLflow adapter on in-process SQLite, and
FakeRegistry) and ModelArtifacts (MlflowModels on a real server, and FakeModels)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.services.mlflow_server import free_port
from watcher.backends.mlflow_models import TRAIN_EXPERIMENT, MlflowModels
from watcher.backends.mlflow_registry import MlflowRegistry
from watcher.errors import RegistryError, RegistryUnavailable, UsageError
from watcher.ports import LoadedModel, ModelArtifacts, Registry, RegistryMode, quarantine_tags
from watcher.testing import FakeModels, FakeRegistry

if TYPE_CHECKING:
    from pipeline.profile import Profile

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


def _delete(reg: Registry, name: str, version: str | None = None) -> None:
    """Delete a version (or the whole model) behind the adapter's back."""
    if isinstance(reg, FakeRegistry):
        reg.delete_model(name) if version is None else reg.delete_version(name, version)
        return
    assert isinstance(reg, MlflowRegistry)
    client: Any = reg.client
    if version is None:
        client.delete_registered_model(name)
    else:
        client.delete_model_version(name, version)


def test_snapshot_sees_what_changed_since_the_last_one(subject: tuple[Registry, Create]) -> None:
    """A poll reads the registry afresh: a tag set on a version already seen, Production
    moving, a new version, a deleted version and a deleted model all show on the next one."""
    reg, create = subject
    prefix = unique("poll")
    name, gone = f"{prefix}-a", f"{prefix}-b"
    for _ in range(3):
        create(name, {"data_hash": "abc"})
    create(gone, None)
    reg.set_production(name, "1")
    first = {s.name: s for s in reg.snapshot([f"{prefix}-*"])}
    assert ("1", {"1", "2", "3"}) == (first[name].production, set(first[name].versions))
    assert gone in first
    reg.set_tags(name, "1", quarantine_tags("accuracy 0.5", datetime.now(UTC), "watcher"))
    reg.set_tags(name, "2", {"accuracy": "0.97"})
    reg.set_production(name, "2")
    assert "4" == create(name, None)
    _delete(reg, name, "3")
    _delete(reg, gone)
    (snap,) = reg.snapshot([f"{prefix}-*"])
    assert (name, "2") == (snap.name, snap.production)
    assert ["1", "2", "4"] == list(snap.versions)
    assert snap.versions["1"].quarantined and not snap.versions["2"].quarantined
    assert {"data_hash": "abc", "accuracy": "0.97"} == dict(snap.versions["2"].tags)
    assert ("Production" if reg.mode == "stage" else "None") == snap.versions["2"].stage


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
    observations, the same number of calls as one at a time: a snapshot is 1 listing of
    models + 1 of versions, whatever the number of models."""
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
        assert 2 == reg.calls
        wanted = [(s.name, s.production) for s in snaps if s.production is not None]
        obs = FeedbackReader(reg).observations(wanted)
        assert 8 == len(wanted) == len([k for k, v in obs.items() if v])
        results.append((snaps, {k: [(o.value, o.samples) for o in v] for k, v in obs.items()}))
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


def test_archive_moves_to_archived_in_stage_mode_only(subject: tuple[Registry, Create]) -> None:
    """Stage mode: Archived, and an archived Production leaves no Production. Alias mode:
    nothing to do (no stages), Production stays."""
    reg, create = subject
    name = unique()
    create(name, None)
    create(name, None)
    reg.set_production(name, "2")
    reg.archive(name, "1")
    reg.archive(name, "2")
    stages = {v.version: v.stage for v in reg.versions(name)}
    if reg.mode == "stage":
        assert {"1": "Archived", "2": "Archived"} == stages
        assert None is reg.production(name)
    else:
        assert {"1": "None", "2": "None"} == stages
        assert "2" == reg.production(name)


def test_tags_merge_and_deleting_a_missing_tag_is_quiet(subject: tuple[Registry, Create]) -> None:
    """set_tags adds to the tags there are; delete_tag of an absent key is no error; tags on
    a version that does not exist are a RegistryError."""
    reg, create = subject
    name = unique()
    version = create(name, {"data_hash": "abc"})
    reg.set_tags(name, version, {"accuracy": "0.97"})
    reg.delete_tag(name, version, "never-set")
    info = reg.get_version(name, version)
    assert info is not None
    assert {"data_hash": "abc", "accuracy": "0.97"} == dict(info.tags)
    with pytest.raises(RegistryError):
        reg.set_tags(name, "9", {"accuracy": "0.5"})


def test_calls_are_counted_for_the_thread_they_run_for(sqlite_uri: str) -> None:
    """One adapter shared by the poll thread and the main loop: each thread sees its own
    count, so a poll's mlflow_calls_per_poll is not inflated by the main loop's calls."""
    reg = MlflowRegistry(sqlite_uri, max_retries=0)
    reg.model_exists(unique())
    seen: list[int] = []

    def poll() -> None:
        for _ in range(3):
            reg.model_exists(unique())
        seen.append(reg.calls)

    worker = threading.Thread(target=poll)
    worker.start()
    worker.join(timeout=120)
    assert [3] == seen
    assert 1 == reg.calls


# --- ModelArtifacts: MlflowModels on a real server and FakeModels ----------------------


@dataclass
class Artifacts:
    """A ModelArtifacts subject and how to set one up: ``train`` registers a version whose
    training run (tagged with a trigger run id) logged a profile, a model and an accuracy;
    ``bare`` one with no training run."""

    registry: Registry
    models: ModelArtifacts
    train: Callable[[str, Profile, Any, str, float], str]
    bare: Callable[[str], str]


def _real_artifacts(url: str, tmp_path: Path) -> Artifacts:
    import mlflow.sklearn

    from pipeline.profile import PROFILE_ARTIFACT

    reg = MlflowRegistry(url, max_retries=0)
    client: Any = reg.client
    exp = client.get_experiment_by_name(TRAIN_EXPERIMENT)
    exp_id = exp.experiment_id if exp else client.create_experiment(TRAIN_EXPERIMENT)

    def register(name: str, **kwargs: Any) -> str:
        if not reg.model_exists(name):
            client.create_registered_model(name)
        return str(client.create_model_version(name, **kwargs).version)

    def train(name: str, profile: Profile, model: Any, run_id: str, accuracy: float) -> str:
        run = client.create_run(exp_id, tags={"dag_run_id": run_id})
        rid = run.info.run_id
        client.log_metric(rid, "accuracy", accuracy)
        client.log_text(rid, profile.to_json(), PROFILE_ARTIFACT)
        saved = tmp_path / f"model-{rid}"
        mlflow.sklearn.save_model(model, saved)
        client.log_artifacts(rid, str(saved), "model")
        client.update_run(rid, status="FINISHED")
        return register(name, source=f"runs:/{rid}/model", run_id=rid)

    return Artifacts(
        reg, MlflowModels(reg), train, lambda name: register(name, source="s3://bench/model")
    )


def _fake_artifacts() -> Artifacts:
    reg = FakeRegistry()
    models = FakeModels(reg)

    def train(name: str, profile: Profile, model: Any, run_id: str, accuracy: float) -> str:
        version = reg.create_version(name)
        models.profiles[(name, version)] = profile
        features = tuple(str(f) for f in model.feature_names_in_)
        models.models[(name, version)] = LoadedModel(version, model, features)
        models.run_accuracy[run_id] = accuracy
        return version

    return Artifacts(reg, models, train, reg.create_version)


@pytest.fixture(params=["fake", pytest.param("mlflow", marks=pytest.mark.service)])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> Artifacts:
    if request.param == "fake":
        return _fake_artifacts()
    return _real_artifacts(request.getfixturevalue("mlflow_server"), tmp_path)


def _trained(artifacts: Artifacts) -> tuple[str, str, str, Profile, Any]:
    """A version trained on a tiny table: (name, version, trigger run id, profile, model)."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from pipeline.profile import build_profile

    df = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0], "y": [0, 0, 1, 1]})
    profile = build_profile(df, "y", data_hash="f" * 64)
    model = LogisticRegression().fit(df[["a", "b"]], df["y"])
    name, run_id = unique("art"), f"data__{unique('hash')}"
    return name, artifacts.train(name, profile, model, run_id, 0.75), run_id, profile, model


def test_training_profile_is_what_the_run_logged(artifacts: Artifacts) -> None:
    """The profile comes back as logged; a version without a training run has none; an
    unknown version or model is bad input (exit 2), not a backend failure."""
    name, version, _run, profile, _model = _trained(artifacts)
    got = artifacts.models.training_profile(name, version)
    assert got is not None and profile.to_dict() == got.to_dict()
    assert None is artifacts.models.training_profile(name, artifacts.bare(name))
    with pytest.raises(UsageError):
        artifacts.models.training_profile(name, "99")
    with pytest.raises(UsageError):
        artifacts.models.training_profile(unique("missing"), "1")


def test_triggered_run_accuracy_finds_the_run_by_trigger_id(artifacts: Artifacts) -> None:
    """The accuracy the run tagged with the trigger's run id logged; None for other ids."""
    _name, _version, run_id, _profile, _model = _trained(artifacts)
    assert 0.75 == artifacts.models.triggered_run_accuracy(run_id)
    assert None is artifacts.models.triggered_run_accuracy("data__" + "0" * 64)


def test_load_model_is_the_pinned_version(artifacts: Artifacts) -> None:
    """The model scores like the one trained, names its features; an unknown version fails."""
    import pandas as pd

    name, version, _run, _profile, model = _trained(artifacts)
    loaded = artifacts.models.load_model(name, version)
    assert (version, ("a", "b")) == (loaded.version, loaded.features)
    rows = pd.DataFrame({"a": [0.5, 2.5], "b": [1.0, 0.0]})
    assert list(model.predict(rows)) == list(loaded.model.predict(rows))
    with pytest.raises(RegistryError):
        artifacts.models.load_model(name, "99")


def test_model_artifacts_fail_as_registry_errors_when_the_backend_is_down() -> None:
    """Unreachable MLflow, or the fake told it is down: RegistryError (Unavailable where the
    cause is known), which the drift watch logs and goes on without."""
    real = MlflowModels(MlflowRegistry(f"http://127.0.0.1:{free_port()}", max_retries=0, timeout=2))
    fake_registry = FakeRegistry()
    fake_registry.create_version("m")
    fake = FakeModels(fake_registry)
    fake_registry.down = True
    for models in (real, fake):
        with pytest.raises(RegistryUnavailable):
            models.triggered_run_accuracy("data__x")
        with pytest.raises(RegistryError):
            models.training_profile("m", "1")


def test_every_port_method_is_in_this_contract() -> None:
    """A method added to Registry or ModelArtifacts gets a contract test here too."""
    text = Path(__file__).read_text(encoding="utf-8")
    for port in (Registry, ModelArtifacts):
        methods = [n for n, v in vars(port).items() if callable(v) and not n.startswith("_")]
        assert methods
        assert [] == [n for n in methods if f".{n}(" not in text], port.__name__


def test_observation_sources_agree_on_metrics(tmp_path: Path) -> None:
    """ObservationSource: the in-memory fake and FeedbackReader over MLflow give the same
    observations (metric, value, samples, time) for the same reports, any metric (#19)."""
    from watcher.backends.mlflow_observations import FeedbackReader, report_metric
    from watcher.testing import MemoryObservations

    reg = MlflowRegistry(f"sqlite:///{tmp_path / 'obs.db'}", max_retries=0)
    fake = MemoryObservations()
    t0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
    for name in ("clf", "reg"):
        reg.client.create_registered_model(name)
        reg.client.create_model_version(name, source="s3://unused/m")
        reg.set_production(name, "1")
    sent = [("clf", "accuracy", 0.91, 120), ("reg", "rmse", 41.2, 300), ("reg", "mae", 3.5, 20)]
    for i, (model, metric, value, samples) in enumerate(sent):
        at = t0.replace(minute=i)
        report_metric(model, metric, value, samples, version="1", at=at, registry=reg)
        fake.add(model, "1", value, samples, at, metric)
    wanted = [("clf", "1"), ("reg", "1"), ("none", "1")]
    assert fake.observations(wanted) == FeedbackReader(reg).observations(wanted)


def test_model_snapshot_reads_one_model(subject: tuple[Registry, Create]) -> None:
    """A webhook hint's read: the one model as snapshot() shows it; None when absent."""
    reg, create = subject
    name, other = unique(), unique()
    create(name, {"data_hash": "abc"})
    create(name, None)
    create(other, None)
    reg.set_production(name, "2")
    before = int(getattr(reg, "calls", 0))
    one = reg.model_snapshot(name)
    if isinstance(reg, MlflowRegistry):  # the budget of a webhook hint: 2 MLflow calls
        assert 2 == reg.calls - before
    (full,) = reg.snapshot([name])
    assert one is not None
    assert one == full
    assert ("2", ["1", "2"]) == (one.production, list(one.versions))
    assert "abc" == one.versions["1"].tags["data_hash"]
    assert reg.model_snapshot(unique("absent")) is None
