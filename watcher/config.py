"""Configuration: one TOML file, env overrides, flags; validated into frozen models.

Precedence: flag > env (``WATCHER_<SECTION>__<KEY>``) > file > default.
Secrets are ``SecretStr`` fields; they may come only from env vars or a sibling
``<key>_file`` (relative names resolve in ``$CREDENTIALS_DIRECTORY``, systemd's
credentials), never from the TOML file itself, and never appear in dumps.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.errors import SettingError
from pipeline.estimator import DEFAULT_ESTIMATOR, FOREST_KEYS
from pipeline.lineage import DEFAULT_IGNORE
from pipeline.metrics import METRICS, resolve_gate, unknown_metric
from watcher.durations import Duration, PositiveDuration, format_duration, parse_duration
from watcher.errors import ConfigError
from watcher.monitor.policy import MAX_SAMPLES, PolicyConfig, range_text
from watcher.monitor.promql import Template, parse_template
from watcher.ports import matches

ENV_PREFIX = "WATCHER_"
CONFIG_ENV = "WATCHER_CONFIG"
# Set by the template unit (`watcher service-unit --template`) to the instance name.
INSTANCE_ENV = "WATCHER_INSTANCE"
DEFAULT_CONFIG_FILE = Path("watcher.toml")
REDACTED = "********"
# Upper bounds for counts from outside: far beyond any sane value, small enough that
# nothing downstream overflows (SQLite INTEGER) or runs for days (a forest of 10**9 trees).
MAX_TREES = 10_000
MAX_WINDOW = 10_000  # observations per model version the policy looks at
# A config or secret file is small text: never read more (a FIFO or /dev/zero would hang).
MAX_CONFIG_BYTES = 4 << 20
MAX_SECRET_BYTES = 64 << 10
_NO_PLUGINS = "PYDANTIC_DISABLE_PLUGINS"
# http.token: long enough not to be guessed, short and plain enough for a header.
MIN_TOKEN, MAX_TOKEN = 16, 1024
_TOKEN = re.compile(rf"[\x21-\x7e]{{{MIN_TOKEN},{MAX_TOKEN}}}")
SHIPPED_DAG = "train_pipeline"  # dags/train_pipeline.py: trains pipeline.estimator


def _split_list(value: object) -> object:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except RecursionError:
                raise ValueError("JSON list nested too deeply") from None
        return [p.strip() for p in text.split(",") if p.strip()]
    return value


def _dir_or_absent(path: Path | None) -> Path | None:
    """A directory, or nothing yet (the daemon waits for it): never another kind of file,
    nor under one (``/etc/hosts/x`` could never be created)."""
    if path is None:
        return path
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory")
    blocker = next((p for p in path.parents if p.exists()), None)
    if not path.exists() and blocker is not None and not blocker.is_dir():
        raise ValueError(f"{path} cannot be created: {blocker} is not a directory")
    return path


def read_small_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; OSError otherwise. Opened
    non-blocking so a FIFO cannot hang us, and read with a bound so /dev/zero cannot
    fill memory."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit >> 10} KiB")
    return data


StrList = Annotated[list[str], BeforeValidator(_split_list)]
MAX_JSON_DEPTH = 32


def _depth(value: object) -> int:
    """How deep ``value``'s lists and objects nest, counted without recursion."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        node, level = todo.pop()
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        )
        for child in children:
            if isinstance(child, (dict, list)):
                todo.append((child, level + 1))
        deepest = max(deepest, level if isinstance(node, (dict, list)) else 0)
    return deepest


def _json_object(value: object) -> object:
    """A table given as a string (an env var): a JSON object, nested at most
    MAX_JSON_DEPTH deep."""
    if not isinstance(value, str):
        return value
    too_deep = f"JSON object nested more than {MAX_JSON_DEPTH} levels deep"
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"expected a JSON object, got invalid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(too_deep) from None
    if not isinstance(parsed, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}
        got = kind.get(type(parsed), "number")
        raise ValueError(f"expected a JSON object, got a JSON {got}: {value!r:.40}")
    if _depth(parsed) > MAX_JSON_DEPTH:
        raise ValueError(too_deep)
    return parsed


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("not a URL (expected http:// or https://)")
    return value


def _default() -> Any:
    """A section's default: ``{}`` validated by the enclosing model's validator (as a
    default factory calling the section class would build that class's own validator)."""
    return Field(default_factory=dict, validate_default=True)


HttpUrl = Annotated[str, BeforeValidator(lambda v: _check_url(v) if isinstance(v, str) else v)]


class Section(BaseModel):
    # Validators are built when first used, not at import (subclasses inherit this): one
    # per section class and again inside Config's cost ~45 ms of every command's start-up.
    # Sections default to a validated {} (``_default``): loading builds Config's alone.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class SecretsSection(Section):
    """A section whose SecretStr fields may be filled from ``<name>_file``."""

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in _secret_fields(cls):
            file_key = f"{name}_file"
            path_value = data.get(file_key)
            if path_value and data.get(name) is None:
                path = Path(str(path_value))
                cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
                if not path.is_absolute() and cred_dir:
                    path = Path(cred_dir) / path
                try:
                    raw = read_small_file(path, MAX_SECRET_BYTES)
                    data[name] = raw.decode("utf-8").rstrip("\r\n")
                except OSError as exc:
                    raise ValueError(
                        f"{file_key}: cannot read {path}: {exc.strerror or exc}"
                    ) from None
                except UnicodeDecodeError:
                    raise ValueError(f"{file_key}: {path} is not UTF-8 text") from None
        return data


class WatchConfig(Section):
    data_dir: Path = Path("data")
    mode: Literal["auto", "events", "polling"] = "auto"
    quiet_period: PositiveDuration = 2.0
    max_wait: PositiveDuration = 60.0
    reconcile_interval: PositiveDuration = 300.0
    polling_interval: PositiveDuration = 2.0
    ignore: StrList = Field(default_factory=lambda: list(DEFAULT_IGNORE))
    follow_symlinks: bool = False
    hash_workers: int = Field(default=4, ge=1, le=64)
    snapshot_dir: Path | None = None
    snapshot_keep: int = Field(default=10, ge=1, le=100_000)

    @field_validator("data_dir", "snapshot_dir")
    @classmethod
    def _dir(cls, v: Path | None) -> Path | None:
        return _dir_or_absent(v)


class StateConfig(Section):
    dir: Path = Path(".watcher")

    @field_validator("dir")
    @classmethod
    def _dir(cls, v: Path) -> Path:
        return _dir_or_absent(v) or v


class MlflowConfig(Section):
    tracking_uri: str | None = None
    registry_mode: Literal["alias", "stage"] = "alias"
    request_timeout: PositiveDuration = 15.0
    max_retries: int = Field(default=2, ge=0, le=10)
    concurrency: int = Field(default=8, ge=1, le=10)  # MLflow's HTTP pool keeps 10


class AirflowConfig(SecretsSection):
    url: HttpUrl = "http://127.0.0.1:8080"
    username: str = "admin"
    password: SecretStr | None = None
    password_file: Path | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    timeout: PositiveDuration = 10.0


class TriggerConfig(Section):
    backend: Literal["local", "airflow", "command"] = "local"
    dag_id: str = Field(default=SHIPPED_DAG, min_length=1)
    command: StrList = Field(default_factory=list)
    retry_initial: PositiveDuration = 5.0
    retry_max: PositiveDuration = 600.0
    run_timeout: PositiveDuration = 3600.0
    airflow: AirflowConfig = _default()

    @model_validator(mode="after")
    def _command_needs_argv(self) -> TriggerConfig:
        if self.backend == "command" and not self.command:
            raise ValueError("trigger.command must be set when trigger.backend = 'command'")
        if self.retry_initial > self.retry_max:
            raise ValueError(
                f"trigger.retry_initial ({self.retry_initial:g}s) must not exceed "
                f"trigger.retry_max ({self.retry_max:g}s)"
            )
        return self


class PipelineConfig(Section):
    """The training run's settings, sent in every run conf (``trigger.base``).

    ``estimator`` + ``params`` pick the model (default: the seed's RandomForest, set by
    ``n_estimators`` / ``max_depth``); ``task`` / ``metric`` / ``threshold`` the gate,
    each following from the others where it can (``pipeline.metrics.resolve_gate``).
    """

    model_name: str = Field(default="iris-classifier", min_length=1)
    target_column: str = "target"
    estimator: str = Field(default=DEFAULT_ESTIMATOR, min_length=1)
    params: Annotated[dict[str, JsonValue], BeforeValidator(_json_object)] = Field(
        default_factory=dict
    )
    task: Literal["classification", "regression"] | None = None  # None: inferred
    metric: str | None = None  # None: the task's default (accuracy, rmse)
    threshold: float | None = None  # None: the metric's default (0.9 for accuracy)
    promote: Literal["if_better", "always", "never"] = "if_better"
    n_estimators: int = Field(default=100, ge=1, le=MAX_TREES)
    max_depth: int | None = Field(default=None, ge=1, le=1000)

    @model_validator(mode="after")
    def _gate(self) -> PipelineConfig:
        """Fill in the gate from what is given; contradictions name their key. The
        estimator itself is imported only by :func:`check_estimator`."""
        forest = [k for k in FOREST_KEYS if k in self.model_fields_set]
        if self.estimator != DEFAULT_ESTIMATOR and forest:
            raise ValueError(
                f"pipeline.{forest[0]}: configures the default estimator only; "
                f"put {self.estimator}'s settings in pipeline.params"
            )
        task = self.task
        if task is None and self.metric is None and self.estimator == DEFAULT_ESTIMATOR:
            task = "classification"  # the seed's RandomForestClassifier
        try:
            gate = resolve_gate(task, self.metric, self.threshold)
        except SettingError as exc:
            raise ValueError(f"pipeline.{exc.key}: {exc.detail}") from None
        # Frozen model: the derived values are filled in once, here, for the dump and
        # the run conf alike.
        self.__dict__.update(task=gate.task, metric=gate.metric, threshold=gate.threshold)
        return self

    @property
    def configured_task(self) -> str | None:
        """The task as written (``task`` shows it derived from the metric too): a conflict
        with the estimator then names the key the user wrote."""
        return self.task if "task" in self.model_fields_set else None


# Only accuracy has a default threshold (the seed's); any other metric needs one said.
DEFAULT_THRESHOLD = {"accuracy": 0.9}
_OBJECTIVE = ("metric", "threshold", "window", "min_samples", "for_", "keep_firing_for")


def _sugar_metric(key: str) -> str | None:
    """``min_accuracy`` / ``max_rmse`` → the metric named, else None (``min_samples``)."""
    word, _, name = key.partition("_")
    return name if word in ("min", "max") and name in METRICS else None


def _number_or_none(value: object) -> float | None:
    if isinstance(value, bool):
        return None  # TOML `true` is no threshold (float(True) would make it 1.0)
    try:
        return float(value)  # type: ignore[arg-type]  # env values are strings
    except (TypeError, ValueError):
        return None  # not a number: the field's own validation says so


def _objective(
    data: dict[str, Any], where: str, inherited: tuple[str, float] | None
) -> dict[str, Any]:
    """Resolve ``min_<metric>`` / ``max_<metric>`` into ``metric`` + ``threshold`` and check
    the pair against the catalogue (pipeline/metrics.py): a conflict or a value outside the
    metric's range raises naming the key. ``inherited``: the section's own (metric,
    threshold) when resolving an override (None: the section itself)."""
    out = dict(data)
    sugar = [k for k in data if _sugar_metric(k)]
    source = "threshold"
    if len(sugar) > 1:
        raise ValueError(f"{where}.{sugar[1]}: conflicts with {where}.{sugar[0]}; keep one")
    if sugar:
        key = source = sugar[0]
        name = _sugar_metric(key)
        assert name is not None  # noqa: S101
        m = METRICS[name]
        want = f"{'min' if m.direction == 'higher' else 'max'}_{name}"
        if key != want:
            raise ValueError(
                f"{where}.{key}: {m.direction} is better for {name}, so its threshold is {want}"
            )
        if out.get("metric") not in (None, name):
            raise ValueError(
                f"{where}.{key}: conflicts with {where}.metric = {out['metric']!r} "
                f"(for {out['metric']}, set {where}.threshold)"
            )
        if out.get("threshold") is not None:
            raise ValueError(f"{where}.{key}: conflicts with {where}.threshold; keep one")
        out["metric"], out["threshold"] = name, out.pop(key)
    base_metric = inherited[0] if inherited else "accuracy"
    name = str(out.get("metric") or base_metric)
    if name not in METRICS:
        raise ValueError(f"{where}.metric: {unknown_metric(name)}")
    m = METRICS[name]
    if out.get("threshold") is None and (inherited is None or name != base_metric):
        if name not in DEFAULT_THRESHOLD:
            sugar_key = f"{'min' if m.direction == 'higher' else 'max'}_{name}"
            raise ValueError(
                f"{where}.threshold: required for metric {name!r} (or {where}.{sugar_key} = ...)"
            )
        out["threshold"] = DEFAULT_THRESHOLD[name]
    raw = out.get("threshold")
    value = _number_or_none(raw)
    if raw is not None and value is None:
        raise ValueError(f"{where}.{source}: expected a number, got {raw!r}")
    if value is not None and (math.isnan(value) or not m.in_range(value)):
        raise ValueError(
            f"{where}.{source}: {value:g} is outside the range of {name} ({range_text(m)})"
        )
    return out


class MonitorOverride(Section):
    """``[monitor.overrides."fraud-*"]``: what differs for the models matching a name or
    glob (unset keys: the ``[monitor]`` values)."""

    metric: str | None = None
    threshold: float | None = None
    window: int | None = Field(default=None, ge=1, le=MAX_WINDOW)
    min_samples: int | None = Field(default=None, ge=1, le=MAX_SAMPLES)
    for_: Duration | None = Field(default=None, alias="for")
    keep_firing_for: Duration | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# monitor.webhooks.tolerance: MLflow signs each delivery once and retries it for about
# a minute (MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES, exponential backoff); clocks drift by
# seconds. Below 10 s a retry or a skewed clock is refused; past an hour a captured
# delivery stays replayable for long (and the de-duplication table grows with it).
MIN_TOLERANCE, MAX_TOLERANCE = 10.0, 3600.0
DEFAULT_RECONCILE = 300.0
WEBHOOK_PATH = "/hooks/mlflow"


class RegistryWebhooksConfig(SecretsSection):
    """``[monitor.webhooks]``: MLflow registry webhooks as hints; a secret enables them."""

    secret: SecretStr | None = None
    secret_file: Path | None = None
    url: HttpUrl | None = None  # what MLflow calls (default: http://<http.listen>/hooks/mlflow)
    tolerance: Duration = 300.0

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().strip():
            raise ValueError("must not be empty (it signs every delivery)")
        return v

    @field_validator("tolerance")
    @classmethod
    def _tolerance(cls, v: float) -> float:
        if not MIN_TOLERANCE <= v <= MAX_TOLERANCE:
            raise ValueError("must be between 10s and 1h")
        return v

    @model_validator(mode="after")
    def _needs_secret(self) -> RegistryWebhooksConfig:
        unused = sorted(self.model_fields_set - {"secret", "secret_file"})
        if self.secret is None and unused:
            raise ValueError(
                f"monitor.webhooks.{unused[0]}: has no effect without monitor.webhooks.secret "
                "(the secret enables webhooks); set it or remove the key"
            )
        return self

    @property
    def enabled(self) -> bool:
        return self.secret is not None


MAX_PROMETHEUS_TIMEOUT = 120.0  # seconds: one query; the poll waits for every query


class PrometheusConfig(SecretsSection):
    """``[monitor.prometheus]``: live metrics read from a Prometheus server's query API
    (instant queries, one pair per watched Production version per poll)."""

    url: HttpUrl | None = None
    token: SecretStr | None = None  # sent as ``Authorization: Bearer``
    token_file: Path | None = None
    value_query: str | None = None  # the watched metric's value (a PromQL template)
    samples_query: str | None = None  # how many labelled predictions it is over
    timeout: PositiveDuration = 10.0
    down_alert_after: Duration = 300.0

    @field_validator("value_query", "samples_query")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None:
            parse_template(v)  # TemplateError is a ValueError: named by its key
        return v

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: float) -> float:
        if v > MAX_PROMETHEUS_TIMEOUT:
            raise ValueError(f"must be at most {MAX_PROMETHEUS_TIMEOUT:g}s, got {v:g}s")
        return v

    @model_validator(mode="after")
    def _complete(self) -> PrometheusConfig:
        where = "monitor.prometheus"
        if self.url is None:
            unused = sorted(k for k in self.model_fields_set if k != "url")
            if unused:
                raise ValueError(
                    f"{where}.{unused[0]}: has no effect without {where}.url; set the url "
                    "or remove the key"
                )
            return self
        for key in ("value_query", "samples_query"):
            if getattr(self, key) is None:
                raise ValueError(f"{where}.{key}: required when {where}.url is set")
        return self

    def template(self, key: str) -> Template:
        """The parsed ``value_query`` or ``samples_query`` (checked at load)."""
        text = getattr(self, key)
        assert isinstance(text, str)  # noqa: S101  (only asked for when url is set)
        return parse_template(text)


class MonitorConfig(Section):
    models: StrList = Field(default_factory=lambda: ["*"])
    poll_interval: PositiveDuration = 30.0
    # The full poll's period while registry webhooks are healthy (they deliver the rest).
    reconcile_interval: PositiveDuration = DEFAULT_RECONCILE
    webhooks: RegistryWebhooksConfig = _default()
    mlflow_down_alert_after: Duration = 300.0
    # The live metric watched (pipeline/metrics.py: its direction decides a breach) and the
    # value it must meet; ``min_accuracy = 0.9`` / ``max_rmse = 40`` set both at once.
    metric: str = "accuracy"
    threshold: float = 0.9
    window: int = Field(default=5, ge=1, le=MAX_WINDOW)
    min_samples: int = Field(default=100, ge=1, le=MAX_SAMPLES)
    for_: Duration = Field(default=0.0, alias="for")
    keep_firing_for: Duration = 0.0
    feedback_dir: Path | None = None
    overrides: dict[str, MonitorOverride] = Field(default_factory=dict)
    prometheus: PrometheusConfig = _default()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _objectives(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = _objective(data, "monitor", None)
        inherited = (str(out.get("metric") or "accuracy"), out["threshold"])
        overrides = out.get("overrides")
        if isinstance(overrides, str):  # from env: resolve each override's shorthand too
            try:
                overrides = out["overrides"] = _json_object(overrides)
            except ValueError as exc:
                raise ValueError(f"monitor.overrides: {exc}") from None
        if isinstance(overrides, dict):
            out["overrides"] = {
                pattern: _objective(o, f'monitor.overrides."{pattern}"', inherited)
                if isinstance(o, dict)
                else o
                for pattern, o in overrides.items()
            }
        return out

    @model_validator(mode="before")
    @classmethod
    def _reconcile_default(cls, data: Any) -> Any:
        """Left unset, reconcile_interval is never shorter than poll_interval (a long
        poll_interval alone is not a mistake); set explicitly shorter, it is refused."""
        if isinstance(data, dict) and "reconcile_interval" not in data:
            try:
                poll = parse_duration(data.get("poll_interval", 0))
            except ValueError:
                return data  # poll_interval's own check names the problem
            return {**data, "reconcile_interval": max(DEFAULT_RECONCILE, poll)}
        return data

    @model_validator(mode="after")
    def _reconcile_not_faster(self) -> MonitorConfig:
        follows = max(DEFAULT_RECONCILE, self.poll_interval)  # what it is when left unset
        if not self.webhooks.enabled and self.reconcile_interval != follows:
            raise ValueError(
                "monitor.reconcile_interval: has no effect without registry webhooks "
                "(monitor.webhooks.secret); set the secret or remove the key"
            )
        if self.reconcile_interval < self.poll_interval:
            raise ValueError(
                f"monitor.reconcile_interval: {format_duration(self.reconcile_interval)} is "
                f"shorter than monitor.poll_interval ({format_duration(self.poll_interval)}); "
                "the reconcile poll replaces the regular poll while webhooks are healthy"
            )
        return self

    @field_validator("feedback_dir")
    @classmethod
    def _dir(cls, v: Path | None) -> Path | None:
        return _dir_or_absent(v)

    @model_validator(mode="after")
    def _overrides_can_apply(self) -> MonitorConfig:
        """An override no watched model can take is a typo. Only exact names are checked:
        whether two globs overlap (``*-x`` and ``a-*``) is not cheap to tell."""
        for pattern in self.overrides:
            if not pattern:
                raise ValueError('monitor.overrides."": an empty name matches no model')
            exact = not any(c in pattern for c in "*?[")
            if exact and not matches(pattern, self.models):
                raise ValueError(
                    f'monitor.overrides."{pattern}": matches no watched model pattern '
                    f"(monitor.models = {self.models})"
                )
        return self

    @model_validator(mode="after")
    def _prometheus_selects(self) -> MonitorConfig:
        """Each watched model must read its own series, of its own metric: a query without
        ``{model}`` would give every model the same value (unless one model is watched),
        and without ``{metric}`` the same value to models watching different metrics."""
        prom = self.prometheus
        if prom.url is None:
            return self
        single = len(self.models) == 1 and not any(c in self.models[0] for c in "*?[")
        for key in ("value_query", "samples_query"):
            if not single and "model" not in prom.template(key).names:
                raise ValueError(
                    f'monitor.prometheus.{key}: needs {{model}} (e.g. model="{{model}}"): '
                    f"monitor.models = {self.models} may match several models"
                )
        watched = {self.metric, *(o.metric for o in self.overrides.values() if o.metric)}
        if len(watched) > 1 and "metric" not in prom.template("value_query").names:
            raise ValueError(
                f"monitor.prometheus.value_query: needs {{metric}}: the models watch "
                f"{', '.join(sorted(watched))} (monitor.metric and monitor.overrides)"
            )
        return self

    def override_for(self, model: str) -> MonitorOverride | None:
        """The override of ``model``: its exact name, else the first glob (in file order)."""
        if model in self.overrides:
            return self.overrides[model]
        return next((o for p, o in self.overrides.items() if matches(model, [p])), None)

    def policy_for(self, model: str) -> PolicyConfig:
        """The live-metric policy of ``model``: ``[monitor]`` with its override applied."""
        values = {k: getattr(self, k) for k in _OBJECTIVE}
        override = self.override_for(model)
        if override is not None:
            values.update({k: v for k in _OBJECTIVE if (v := getattr(override, k)) is not None})
        return PolicyConfig(**values)


class RollbackConfig(Section):
    auto: bool = False
    after: Duration = 0.0
    cooldown: Duration = 1800.0
    max_per_window: int = Field(default=2, ge=1, le=1000)
    window: PositiveDuration = 86400.0
    dry_run: bool = False
    retrain: bool = False


class AlertmanagerConfig(Section):
    url: HttpUrl | None = None
    resend_interval: PositiveDuration = 60.0


class WebhookConfig(SecretsSection):
    url: SecretStr | None = None
    url_file: Path | None = None
    secret: SecretStr | None = None
    secret_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            _check_url(v.get_secret_value())
        return v


class SlackConfig(SecretsSection):
    webhook_url: SecretStr | None = None
    webhook_url_file: Path | None = None

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            _check_url(v.get_secret_value())
        return v


class EmailConfig(SecretsSection):
    host: str | None = None
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    sender: str = "registry-watcher@localhost"
    to: StrList = Field(default_factory=list)
    timeout: PositiveDuration = 10.0

    @model_validator(mode="after")
    def _recipients(self) -> EmailConfig:
        if self.host and not self.to:
            raise ValueError("alerts.email.to must list at least one recipient when host is set")
        return self


class AlertsConfig(Section):
    repeat_interval: PositiveDuration = 4 * 3600.0
    log: bool = True
    file: Path | None = None
    alertmanager: AlertmanagerConfig = _default()
    webhook: WebhookConfig = _default()
    slack: SlackConfig = _default()
    email: EmailConfig = _default()


class HttpConfig(SecretsSection):
    listen: str | None = None
    allow_public: bool = False
    # The bearer token of the write endpoints (POST /v1/accuracy): they exist only with it.
    token: SecretStr | None = None
    token_file: Path | None = None

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        # Never quote the value: a message naming the rule is enough.
        if v is not None and not _TOKEN.fullmatch(v.get_secret_value()):
            raise ValueError(
                f"must be {MIN_TOKEN} to {MAX_TOKEN} printable ASCII characters without "
                "spaces (e.g. the output of `openssl rand -hex 32`)"
            )
        return v

    @model_validator(mode="after")
    def _token_needs_listen(self) -> HttpConfig:
        if self.token is not None and not self.listen:
            raise ValueError(
                "http.token: the intake it guards is served on http.listen, which is not set: "
                "set http.listen too (or drop http.token)"
            )
        return self

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is None:
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9464")
        return v


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "console", "json"] = "auto"


class DriftConfig(Section):
    """Data drift of new data against the Production version's reference profile."""

    alert: bool = True
    drift_share: float = Field(default=0.5, gt=0.0, le=1.0)
    method: Literal["auto", "psi"] = "auto"
    # auto: KS/chi-square drift at p < p_value (<= 1,000 reference rows), else normed
    # Wasserstein/Jensen-Shannon >= threshold; psi: PSI >= threshold.
    p_value: float = Field(default=0.05, gt=0.0, lt=1.0)
    threshold: float = Field(default=0.1, gt=0.0)


class Config(Section):
    watch: WatchConfig = _default()
    state: StateConfig = _default()
    mlflow: MlflowConfig = _default()
    trigger: TriggerConfig = _default()
    pipeline: PipelineConfig = _default()
    monitor: MonitorConfig = _default()
    rollback: RollbackConfig = _default()
    alerts: AlertsConfig = _default()
    http: HttpConfig = _default()
    log: LogConfig = _default()
    drift: DriftConfig = _default()

    @model_validator(mode="after")
    def _public_bind(self) -> Config:
        if self.http.listen and not self.http.allow_public:
            host = self.http.listen.rpartition(":")[0].strip("[]")
            if host not in ("127.0.0.1", "localhost", "::1"):
                raise ValueError(
                    f"http.listen: {host} is not a loopback address; "
                    "set http.allow_public = true to expose the endpoint"
                )
        return self

    @model_validator(mode="after")
    def _webhooks_need_listen(self) -> Config:
        hooks = self.monitor.webhooks
        if not hooks.enabled:
            return self
        if not self.http.listen:
            raise ValueError(
                "monitor.webhooks.secret: the webhook receiver is served on http.listen, "
                "which is unset; set http.listen or remove monitor.webhooks.secret(_file)"
            )
        if self.mlflow.registry_mode != "alias":
            raise ValueError(
                "monitor.webhooks.secret: MLflow sends no webhook for stage transitions; "
                'registry webhooks need mlflow.registry_mode = "alias"'
            )
        host = self.http.listen.rpartition(":")[0].strip("[]")
        if hooks.url is None and host in ("0.0.0.0", "::", ""):  # noqa: S104  (a check)
            raise ValueError(
                f"monitor.webhooks.url: http.listen {self.http.listen} is no address MLflow "
                "can call; set monitor.webhooks.url to the receiver's reachable URL"
            )
        return self

    @property
    def webhook_url(self) -> str:
        """The URL MLflow delivers to: monitor.webhooks.url, else on http.listen."""
        return self.monitor.webhooks.url or f"http://{self.http.listen}{WEBHOOK_PATH}"

    @model_validator(mode="after")
    def _seed_estimator_classifies(self) -> Config:
        """The default estimator is a classifier: a regression gate needs another one —
        when the shipped pipeline trains (a team's own DAG ignores the estimator)."""
        pipe = self.pipeline
        seed = self.trains_estimator and pipe.estimator == DEFAULT_ESTIMATOR
        if seed and pipe.task == "regression":
            key = "task" if pipe.configured_task else "metric"
            raise ValueError(
                f"pipeline.{key}: {DEFAULT_ESTIMATOR} (the default estimator) is a "
                f"classification estimator, but {getattr(pipe, key)} is a regression "
                f"{'task' if key == 'task' else 'metric'}: set pipeline.estimator"
            )
        return self

    @property
    def trains_estimator(self) -> bool:
        """Whether runs go to the shipped pipeline (the local backend, or the Airflow DAG
        ``train_pipeline``), which trains ``pipeline.estimator``; a team's own DAG or
        command trains its own model and only reads the gate settings."""
        backend = self.trigger.backend
        return backend == "local" or (backend == "airflow" and self.trigger.dag_id == SHIPPED_DAG)

    @model_validator(mode="after")
    def _snapshots_apart(self) -> Config:
        """Snapshots in the data dir would look like new data; a data or state dir inside
        the snapshot dir would share it with the pruner."""
        if self.watch.snapshot_dir is None:
            return self
        snap = self.watch.snapshot_dir.resolve()
        others = {"watch.data_dir": self.watch.data_dir, "state.dir": self.state.dir}
        if self.monitor.feedback_dir is not None:
            others["monitor.feedback_dir"] = self.monitor.feedback_dir
        for key, path in others.items():
            other = path.resolve()
            if snap == other or other in snap.parents or snap in other.parents:
                raise ValueError(
                    f"watch.snapshot_dir {snap} and {key} {other} overlap; "
                    "give snapshots a directory of their own"
                )
        return self

    # Derived values -------------------------------------------------------

    @property
    def tracking_uri(self) -> str:
        """Explicit config > MLFLOW_TRACKING_URI > SQLite in the state dir."""
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        return f"sqlite:///{self.state.dir.resolve() / 'mlflow.db'}"

    @property
    def alerts_file(self) -> Path:
        return self.alerts.file or self.state.dir / "alerts.jsonl"

    def secret_values(self) -> list[str]:
        """Every secret value present, for the log redaction processor: the secret
        fields and any password written into a URL (``postgresql://u:pw@db/x``)."""
        values = [s.get_secret_value() for s in _iter_secrets(self) if s.get_secret_value()]
        dump = self.model_dump(mode="json", by_alias=True)
        urls = [*_strings(dump), self.tracking_uri]
        return values + [pw for pw in map(url_password, urls) if pw]

    def redacted(self) -> dict[str, Any]:
        """The effective config as plain data with secrets and URL passwords replaced."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        _mask(data, self)
        return {key: _mask_url_passwords(value) for key, value in data.items()}


def check_estimator(config: Config) -> None:
    """Import and build the configured estimator (no training) and check it agrees with
    the gate; ConfigError naming the key. A no-op for the seed's default (known good),
    so the light commands stay free of sklearn unless another estimator is configured,
    and when runs go to a team's own DAG or command (it trains its own model)."""
    pipe = config.pipeline
    if not config.trains_estimator or (pipe.estimator == DEFAULT_ESTIMATOR and not pipe.params):
        return
    from pipeline.estimator import effective_params, resolve

    try:
        resolve(
            pipe.estimator,
            effective_params(pipe.estimator, pipe.params, pipe.n_estimators, pipe.max_depth),
            task=pipe.configured_task,
            metric=pipe.metric,
            threshold=pipe.threshold,
        )
    except SettingError as exc:
        raise ConfigError(f"pipeline.{exc.key}: {exc.detail}") from None


def _iter_secrets(model: BaseModel) -> Iterator[SecretStr]:
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            yield value
        elif isinstance(value, BaseModel):
            yield from _iter_secrets(value)


def _mask(data: dict[str, Any], model: BaseModel) -> None:
    for name, info in type(model).model_fields.items():
        key = info.alias or name
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            data[key] = REDACTED
        elif isinstance(value, BaseModel):
            _mask(data[key], value)


def url_password(value: str) -> str | None:
    """The password in a URL's user-info, if any (``scheme://user:pw@host``)."""
    if "://" not in value:
        return None
    try:
        return urlsplit(value).password or None
    except ValueError:  # a malformed port or bracket: not a URL we can read
        return None


def _strings(data: object) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for item in data.values():
            yield from _strings(item)
    elif isinstance(data, list):
        for item in data:
            yield from _strings(item)


def _mask_url_passwords(data: object) -> object:
    if isinstance(data, str):
        pw = url_password(data)
        return data.replace(f":{pw}@", f":{REDACTED}@") if pw else data
    if isinstance(data, dict):
        return {k: _mask_url_passwords(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_mask_url_passwords(v) for v in data]
    return data


def _secret_fields(cls: type[BaseModel]) -> list[str]:
    return [
        name
        for name, info in cls.model_fields.items()
        if info.annotation is not None and "SecretStr" in str(info.annotation)
    ]


def _secret_paths(cls: type[BaseModel], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    paths: set[tuple[str, ...]] = set()
    for name, info in cls.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            paths |= _secret_paths(ann, (*prefix, info.alias or name))
        elif ann is not None and "SecretStr" in str(ann):
            paths.add((*prefix, name))
    return paths


# Loading ------------------------------------------------------------------


def config_path(flag: Path | None, env: Mapping[str, str]) -> Path | None:
    if flag is not None:
        return flag
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = read_small_file(path, MAX_CONFIG_BYTES).decode("utf-8")
        return tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: config file is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
            f"at offset {exc.start})"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None


def env_overrides(env: Mapping[str, str]) -> dict[tuple[str, ...], tuple[str, str]]:
    """``WATCHER_A__B__C=v`` → {("a","b","c"): (name, v)}. Names without ``__`` are not
    config. Keys are lower-cased, except a model name under ``monitor.overrides``
    (``WATCHER_MONITOR__OVERRIDES__Fraud__MAX_RMSE``: the override of "Fraud")."""
    out: dict[tuple[str, ...], tuple[str, str]] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = name[len(ENV_PREFIX) :].split("__")
        path = [p.lower() for p in parts]
        if path[:2] == ["monitor", "overrides"] and len(path) > 2:
            path[2] = parts[2]
        if all(path):
            out[tuple(path)] = (name, value)
    return out


def _env_clashes(from_env: Mapping[tuple[str, ...], tuple[str, str]]) -> list[str]:
    """A table set whole (JSON) and key by key: which would win depends on env order."""
    return [
        f"{'.'.join(inner)}: {outer_name} and {inner_name} both set it; keep one"
        for outer, (outer_name, _) in from_env.items()
        for inner, (inner_name, _) in from_env.items()
        if len(inner) > len(outer) and inner[: len(outer)] == outer
    ]


def _set(tree: dict[str, Any], path: tuple[str, ...], value: object) -> None:
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, value in tree.items():
        if isinstance(value, dict) and value:  # an empty table is a key of its own
            yield from _flatten(value, (*prefix, key))
        else:
            yield (*prefix, key)


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Build the effective config; raises ConfigError listing every problem."""
    env = os.environ if env is None else env
    file_path = config_path(path, env)
    tree: dict[str, Any] = _read_toml(file_path) if file_path else {}
    sources: dict[tuple[str, ...], str] = dict.fromkeys(_flatten(tree), f"in {file_path}")

    errors: list[str] = []
    for secret in _secret_paths(Config):
        if secret in sources:
            dotted = ".".join(secret)
            env_name = ENV_PREFIX + "__".join(p.upper() for p in secret)
            errors.append(
                f"{dotted}: secrets may not be written in the config file ({file_path}); "
                f"set {env_name} or {dotted}_file"
            )
    from_env = env_overrides(env)
    errors.extend(_env_clashes(from_env))
    for key_path, (env_name, env_value) in from_env.items():
        _set(tree, key_path, env_value)
        sources[key_path] = f"from env {env_name}"
    for dotted, flag_value in (overrides or {}).items():
        flag_path = tuple(dotted.split("."))
        _set(tree, flag_path, flag_value)
        sources[flag_path] = "from the command line"

    _build_validator()
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        errors.extend(_format_errors(exc, sources))
        config = None
    if errors or config is None:
        raise ConfigError(errors)
    return _instance_defaults(config, env)


def _instance_defaults(config: Config, env: Mapping[str, str]) -> Config:
    """A template instance watches its own model unless monitor.models is given, so two
    instances on one host never alert (or roll back) one model twice."""
    if not env.get(INSTANCE_ENV) or "models" in config.monitor.model_fields_set:
        return config
    monitor = config.monitor.model_copy(update={"models": [config.pipeline.model_name]})
    return config.model_copy(update={"monitor": monitor})


def _build_validator() -> None:
    """Build Config's (deferred) validator once, without pydantic's plugin discovery: the
    first validator built in a process reads the entry points of every installed
    distribution (~200 with mlflow's dependencies: ~20 ms of each command's start-up), and
    plugins have no business watching our config. Later models (mlflow's) still get them.
    The env var is set for the build only: the first load_config runs before any thread
    or child process starts (the CLI loads the config first), so nothing else sees it."""
    if Config.__pydantic_complete__:
        return
    saved = os.environ.get(_NO_PLUGINS)
    os.environ[_NO_PLUGINS] = "__all__"
    try:
        Config.model_rebuild()
    finally:
        if saved is None:
            del os.environ[_NO_PLUGINS]
        else:
            os.environ[_NO_PLUGINS] = saved


def _format_errors(exc: ValidationError, sources: Mapping[tuple[str, ...], str]) -> list[str]:
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(str(p) for p in err["loc"])
        msg = str(err["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        dotted = ".".join(loc) or "(top level)"
        named = re.match(r"([a-z_]+(?:\.\w+)+): ", msg)  # a cross-field check names its key
        if named and (not loc or named.group(1).startswith(f"{dotted}.")):
            line = msg
        elif msg.startswith((f"{dotted}: ", f"{dotted}.")) or (
            ":" in msg and msg.split(":")[0].endswith("_file")
        ):
            line = f"{dotted}.{msg}" if msg.split(":")[0].endswith("_file") else msg
        else:
            line = f"{dotted}: {msg}"
        source = _source_of(_named_key(line), sources) or _source_of(loc, sources)
        if source:
            line += f" ({source})"
        lines.append(line)
    return lines


_NAMED_KEY = re.compile(r'((?:\w+|"[^"]*")(?:\.(?:\w+|"[^"]*"))+): ')
_KEY_PART = re.compile(r'"([^"]*)"|([^."]+)')


def _named_key(line: str) -> tuple[str, ...]:
    """The key path a message starts with (``monitor.overrides."h-*".threshold: ...``)."""
    named = _NAMED_KEY.match(line)
    if not named:
        return ()
    return tuple(q or bare for q, bare in _KEY_PART.findall(named.group(1)))


def _source_of(key: tuple[str, ...], sources: Mapping[tuple[str, ...], str]) -> str | None:
    """Where ``key`` (or, for a table, the first key under it) was set."""
    if not key:
        return None
    return sources.get(key) or next(
        (src for path, src in sources.items() if path[: len(key)] == key), None
    )
