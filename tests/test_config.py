"""Config loading: precedence, validation errors with field paths, secrets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from watcher.config import REDACTED, Config, load_config
from watcher.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watcher.toml"
    path.write_text(text, encoding="utf-8")
    return path


class TestPrecedence:
    def test_defaults_without_file(self) -> None:
        """With no file and no env, embedded defaults apply."""
        cfg = load_config(env={})
        assert Path("data") == cfg.watch.data_dir
        assert cfg.trigger.backend == "local"
        assert cfg.watch.quiet_period == 2.0

    def test_file_over_default(self, tmp_path: Path) -> None:
        """A value in the file beats the default."""
        cfg = load_config(write(tmp_path, "[watch]\nquiet_period = '5s'\n"), env={})
        assert cfg.watch.quiet_period == 5.0

    def test_env_over_file(self, tmp_path: Path) -> None:
        """WATCHER_<SECTION>__<KEY> beats the file."""
        path = write(tmp_path, "[watch]\nquiet_period = '5s'\n")
        cfg = load_config(path, env={"WATCHER_WATCH__QUIET_PERIOD": "7"})
        assert cfg.watch.quiet_period == 7.0

    def test_flag_over_env(self, tmp_path: Path) -> None:
        """A command-line override beats env and file."""
        path = write(tmp_path, "[log]\nlevel = 'info'\n")
        cfg = load_config(
            path, env={"WATCHER_LOG__LEVEL": "error"}, overrides={"log.level": "debug"}
        )
        assert cfg.log.level == "debug"

    def test_watcher_config_env_names_the_file(self, tmp_path: Path) -> None:
        """WATCHER_CONFIG points at the file when --config is absent."""
        path = write(tmp_path, "[trigger]\ndag_id = 'other'\n")
        cfg = load_config(env={"WATCHER_CONFIG": str(path)})
        assert cfg.trigger.dag_id == "other"

    def test_nested_env_and_lists(self) -> None:
        """Nested sections use one __ per level; lists accept commas or JSON."""
        cfg = load_config(
            env={
                "WATCHER_TRIGGER__AIRFLOW__USERNAME": "ops",
                "WATCHER_MONITOR__MODELS": "a, b",
                "WATCHER_ALERTS__EMAIL__TO": '["x@example.com"]',
            }
        )
        assert cfg.trigger.airflow.username == "ops"
        assert cfg.monitor.models == ["a", "b"]
        assert cfg.alerts.email.to == ["x@example.com"]

    def test_mlflow_tracking_uri_env_wins_over_default(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The standard MLFLOW_TRACKING_URI beats the embedded SQLite default."""
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
        assert load_config(env={}).tracking_uri == "http://127.0.0.1:5999"
        monkeypatch.delenv("MLFLOW_TRACKING_URI")
        assert load_config(env={}).tracking_uri.endswith(".watcher/mlflow.db")


class TestErrors:
    def test_three_independent_mistakes_all_reported(self, tmp_path: Path) -> None:
        """Every error is listed with its field path, not just the first."""
        path = write(
            tmp_path,
            "[watch]\nquiet_period = -1\n[trigger]\nbackend = 'carrier-pigeon'\n"
            "[alerts.alertmanager]\nurl = 'ftp://nowhere'\n",
        )
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        text = "\n".join(info.value.errors)
        assert len(info.value.errors) == 3, text
        assert "watch.quiet_period: must not be negative" in text
        assert "trigger.backend:" in text
        assert "alerts.alertmanager.url: not a URL" in text

    def test_unknown_key(self, tmp_path: Path) -> None:
        """Unknown keys are rejected, naming where they came from."""
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, "[watch]\nquiet = 1\n"), env={"WATCHER_NOPE__X": "1"})
        text = "\n".join(info.value.errors)
        assert "watch.quiet: unknown key" in text
        assert "nope: unknown key (from env WATCHER_NOPE__X)" in text

    @pytest.mark.parametrize(
        ("toml", "env", "source"),
        [
            (
                'metric = "rmse"\n',
                {"WATCHER_MONITOR__THRESHOLD": "-3"},
                "from env WATCHER_MONITOR__THRESHOLD",
            ),
            (
                "",
                {"WATCHER_MONITOR__METRIC": "r2", "WATCHER_MONITOR__THRESHOLD": "3"},
                "from env WATCHER_MONITOR__THRESHOLD",
            ),
            ("threshold = 3\n", {"WATCHER_MONITOR__METRIC": "r2"}, "in "),
            ("max_rmse = -1\n", {"WATCHER_MONITOR__WINDOW": "3"}, "in "),
        ],
    )
    def test_cross_field_error_names_the_source_of_its_key(
        self, tmp_path: Path, toml: str, env: dict[str, str], source: str
    ) -> None:
        """A check over several keys names where the key it reports was set (not the
        first key of its section)."""
        path = write(tmp_path, f"[monitor]\n{toml}")
        with pytest.raises(ConfigError) as info:
            load_config(path, env=env)
        (line,) = info.value.errors
        assert line.endswith(f"({source}{path})" if source == "in " else f"({source})"), line

    def test_bad_toml_names_file_and_line(self, tmp_path: Path) -> None:
        """A TOML syntax error names the file and the line."""
        path = write(tmp_path, "[watch]\nquiet_period = \n")
        with pytest.raises(ConfigError, match=r"watcher.toml: invalid TOML: .*line 2"):
            load_config(path, env={})

    def test_missing_file(self, tmp_path: Path) -> None:
        """An explicit config path that does not exist is an error."""
        with pytest.raises(ConfigError, match="config file not found"):
            load_config(tmp_path / "absent.toml", env={})

    def test_public_bind_refused(self) -> None:
        """The HTTP endpoint refuses a public address unless allowed."""
        with pytest.raises(ConfigError, match="not a loopback address"):
            load_config(env={"WATCHER_HTTP__LISTEN": "0.0.0.0:9464"})
        cfg = load_config(
            env={"WATCHER_HTTP__LISTEN": "0.0.0.0:9464", "WATCHER_HTTP__ALLOW_PUBLIC": "true"}
        )
        assert cfg.http.listen == "0.0.0.0:9464"


class TestSecrets:
    def test_secret_in_file_refused(self, tmp_path: Path) -> None:
        """Secrets may not be written into the TOML file."""
        path = write(tmp_path, "[trigger.airflow]\npassword = 'hunter2'\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, env={})
        text = "\n".join(info.value.errors)
        assert "WATCHER_TRIGGER__AIRFLOW__PASSWORD" in text
        assert "hunter2" not in text

    def test_secret_from_env_is_redacted(self) -> None:
        """An env secret is usable but redacted in dumps and repr."""
        cfg = load_config(env={"WATCHER_TRIGGER__AIRFLOW__PASSWORD": "hunter2"})
        assert cfg.trigger.airflow.password is not None
        assert cfg.trigger.airflow.password.get_secret_value() == "hunter2"
        assert cfg.redacted()["trigger"]["airflow"]["password"] == REDACTED
        assert "hunter2" not in repr(cfg)
        assert "hunter2" not in str(cfg.redacted())
        assert cfg.secret_values() == ["hunter2"]

    def test_url_password_is_redacted(self, tmp_path: Path) -> None:
        """A password written into a URL never reaches a dump and is scrubbed from logs."""
        path = write(
            tmp_path,
            "[mlflow]\ntracking_uri = 'postgresql://ml:s3cr%40t@db:5432/mlflow'\n"
            "[alerts.alertmanager]\nurl = 'https://ops:hunter2@am.example:9093'\n",
        )
        cfg = load_config(path, env={})
        dump = str(cfg.redacted())
        assert "s3cr%40t" not in dump and "hunter2" not in dump
        assert f"postgresql://ml:{REDACTED}@db:5432/mlflow" in dump
        assert {"s3cr%40t", "hunter2"} <= set(cfg.secret_values())

    def test_secret_from_file_key(self, tmp_path: Path) -> None:
        """`<key>_file` reads the secret; relative names resolve in $CREDENTIALS_DIRECTORY."""
        (tmp_path / "slack").write_text("https://hooks.example/T0/B0/XYZ\n", encoding="utf-8")
        path = write(tmp_path, "[alerts.slack]\nwebhook_url_file = 'slack'\n")
        env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
            cfg = load_config(path, env=env)
        assert cfg.alerts.slack.webhook_url is not None
        assert cfg.alerts.slack.webhook_url.get_secret_value() == "https://hooks.example/T0/B0/XYZ"

    def test_missing_secret_file(self, tmp_path: Path) -> None:
        """A secret file that cannot be read is a config error naming the path."""
        path = write(tmp_path, f"[trigger.airflow]\npassword_file = '{tmp_path}/nope'\n")
        with pytest.raises(ConfigError, match=r"trigger.airflow.password_file: cannot read"):
            load_config(path, env={})


def _keys(cls: type[BaseModel], prefix: str = "") -> list[str]:
    out: list[str] = []
    for name, info in cls.model_fields.items():
        key = prefix + (info.alias or name)
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _keys(ann, key + ".")
        else:
            out.append(key)
    return out


def test_readme_documents_every_key() -> None:
    """The README's configuration table lists every key (so it cannot drift from the code)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", readme, flags=re.MULTILINE))
    assert [] == [k for k in _keys(Config) if k not in documented]


class TestEnvTables:
    """Tables from env: a JSON object, or one key per variable (review finding)."""

    def test_params_from_env_as_a_json_object(self) -> None:
        env = {
            "WATCHER_PIPELINE__ESTIMATOR": "sklearn.linear_model.LogisticRegression",
            "WATCHER_PIPELINE__PARAMS": '{"max_iter": 5, "class_weight": {"0": 1}}',
        }
        assert {"max_iter": 5, "class_weight": {"0": 1}} == load_config(env=env).pipeline.params

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ('{"max_iter":', "expected a JSON object, got invalid JSON"),
            ("[1, 2]", "expected a JSON object, got a JSON array: '[1, 2]'"),
            ("null", "expected a JSON object, got a JSON null"),
            ("5", "expected a JSON object, got a JSON number"),
            ('{"a":' * 40 + "1" + "}" * 40, "nested more than 32 levels deep"),
            ("[" * 100_000, "nested more than 32 levels deep"),
        ],
    )
    def test_bad_json_names_the_variable(self, value: str, message: str) -> None:
        for key in ("PIPELINE__PARAMS", "MONITOR__OVERRIDES"):
            with pytest.raises(ConfigError) as info:
                load_config(env={f"WATCHER_{key}": value})
            (line,) = info.value.errors
            assert message in line and line.endswith(f"(from env WATCHER_{key})"), line

    def test_overrides_from_env_keep_the_model_name_case(self) -> None:
        mon = load_config(env={"WATCHER_MONITOR__OVERRIDES__Fraud__MAX_RMSE": "3"}).monitor
        assert ("rmse", 3.0) == (mon.policy_for("Fraud").metric, mon.policy_for("Fraud").threshold)
        assert 0.9 == mon.policy_for("fraud").threshold  # a different model
        env = {"WATCHER_MONITOR__OVERRIDES": '{"iris-*": {"min_accuracy": 0.5}}'}
        assert 0.5 == load_config(env=env).monitor.policy_for("iris-1").threshold
        with pytest.raises(ConfigError) as info:
            load_config(env={"WATCHER_MONITOR__OVERRIDES__Fraud__MAX_RMSE": "-3"})
        assert str(info.value).startswith('monitor.overrides."Fraud".max_rmse: -3 is outside')
        assert "(from env WATCHER_MONITOR__OVERRIDES__Fraud__MAX_RMSE)" in str(info.value)

    def test_a_table_set_both_whole_and_by_key_is_refused(self) -> None:
        env = {
            "WATCHER_MONITOR__OVERRIDES__Fraud__MAX_RMSE": "3",
            "WATCHER_MONITOR__OVERRIDES": '{"iris-*": {"min_accuracy": 0.5}}',
        }
        with pytest.raises(ConfigError) as info:
            load_config(env=env)
        assert (
            "monitor.overrides.Fraud.max_rmse: WATCHER_MONITOR__OVERRIDES and "
            "WATCHER_MONITOR__OVERRIDES__Fraud__MAX_RMSE both set it; keep one"
        ) in info.value.errors


class TestMonitorMetric:
    """monitor.metric / threshold, the min_/max_<metric> shorthand, per-model overrides (#19)."""

    def test_accuracy_stays_the_default_and_min_accuracy_keeps_working(
        self, tmp_path: Path
    ) -> None:
        default = load_config(env={}).monitor
        assert ("accuracy", 0.9) == (default.metric, default.threshold)
        cfg = load_config(write(tmp_path, "[monitor]\nmin_accuracy = 0.8\n"), env={})
        policy = cfg.monitor.policy_for("anything")
        assert ("accuracy", 0.8) == (policy.metric, policy.threshold)

    @pytest.mark.parametrize(
        "text",
        [
            'metric = "rmse"\nthreshold = 40\n',
            "max_rmse = 40\n",
            'metric = "rmse"\nmax_rmse = 40\n',
        ],
    )
    def test_rmse_threshold_two_ways(self, tmp_path: Path, text: str) -> None:
        cfg = load_config(write(tmp_path, f"[monitor]\n{text}"), env={})
        assert ("rmse", 40.0) == (cfg.monitor.metric, cfg.monitor.threshold)

    def test_overrides_that_may_apply_are_accepted(self, tmp_path: Path) -> None:
        """Exact names a models glob matches, and any glob (overlap of two globs is not
        checked: ``*-x`` and ``a-*`` share ``a-x``)."""
        text = (
            "[monitor]\nmodels = ['a-*', 'c']\n"
            "[monitor.overrides.'a-1']\nwindow = 3\n[monitor.overrides.'c']\nwindow = 3\n"
            "[monitor.overrides.'*-x']\nwindow = 3\n[monitor.overrides.'b-*']\nwindow = 3\n"
        )
        mon = load_config(write(tmp_path, text), env={}).monitor
        assert 4 == len(mon.overrides)

    def test_overrides_per_model_exact_name_first_then_first_glob(self, tmp_path: Path) -> None:
        text = (
            "[monitor]\nmodels = ['*']\nwindow = 4\n"
            "[monitor.overrides.'house-*']\nmax_rmse = 40\nmin_samples = 20\n"
            "[monitor.overrides.'house-big']\nmetric = 'mae'\nthreshold = 9\n"
            "[monitor.overrides.'house-b*']\nmin_r2 = 0.5\n"
            "[monitor.overrides.'iris-*']\nthreshold = 0.95\n"
        )
        mon = load_config(write(tmp_path, text), env={}).monitor
        got = {
            m: (p.metric, p.threshold, p.window, p.min_samples)
            for m in ("house-a", "house-big", "house-blue", "iris-1", "fraud")
            if (p := mon.policy_for(m))
        }
        assert {
            "house-a": ("rmse", 40.0, 4, 20),
            "house-big": ("mae", 9.0, 4, 100),
            "house-blue": ("rmse", 40.0, 4, 20),  # 'house-*' comes first in the file
            "iris-1": ("accuracy", 0.95, 4, 100),  # the [monitor] metric, its own threshold
            "fraud": ("accuracy", 0.9, 4, 100),
        } == got

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ('metric = "rmsle"\n', "monitor.metric: unknown metric 'rmsle' (known: accuracy,"),
            ('metric = "rmse"\n', "monitor.threshold: required for metric 'rmse'"),
            (
                'min_accuracy = 0.9\nmetric = "rmse"\n',
                "monitor.min_accuracy: conflicts with monitor.metric = 'rmse'",
            ),
            ("min_accuracy = 0.9\nthreshold = 0.8\n", "monitor.min_accuracy: conflicts with"),
            ("max_accuracy = 0.9\n", "monitor.max_accuracy: higher is better for accuracy"),
            ("min_rmse = 40\n", "monitor.min_rmse: lower is better for rmse, so its threshold"),
            ("max_rmse = 40\nmax_mae = 3\n", "monitor.max_mae: conflicts with monitor.max_rmse"),
            ("threshold = 1.5\n", "monitor.threshold: 1.5 is outside the range of accuracy"),
            ("max_rmse = -1\n", "monitor.max_rmse: -1 is outside the range of rmse (>= 0)"),
            ("min_r2 = 2\n", "monitor.min_r2: 2 is outside the range of r2 (<= 1)"),
            ('max_rmse = "abc"\n', "monitor.max_rmse: expected a number, got 'abc'"),
            ("max_rmse = true\n", "monitor.max_rmse: expected a number, got True"),
            (
                "[monitor.overrides.'h-*']\nmetric = 'mae'\n",
                "monitor.overrides.\"h-*\".threshold: required for metric 'mae'",
            ),
            (
                "max_rmse = 40\n[monitor.overrides.'h-*']\nthreshold = 1e9\nmin_accuracy = 0.5\n",
                'monitor.overrides."h-*".min_accuracy: conflicts with',
            ),
            (
                "[monitor.overrides.'h-*']\nthreshold = 3\n",
                'monitor.overrides."h-*".threshold: 3 is outside the range of accuracy',
            ),
            (
                "[monitor.overrides.'h-*']\nmodels = ['x']\n",
                "monitor.overrides.h-*.models: unknown",
            ),
            ("[monitor.overrides.'']\n", 'monitor.overrides."": an empty name matches no model'),
            (
                "[monitor.overrides.'']\nwindow = 3\n",
                'monitor.overrides."": an empty name matches no model',
            ),
            (
                "[monitor]\nmodels = ['a-*', 'c']\n[monitor.overrides.'b-1']\nwindow = 3\n",
                'monitor.overrides."b-1": matches no watched model pattern '
                "(monitor.models = ['a-*', 'c'])",
            ),
        ],
    )
    def test_conflicts_exit_2_naming_the_key(
        self, tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        from watcher.cli.main import main

        body = text if text.startswith("[") else f"[monitor]\n{text}"
        path = write(tmp_path, body)
        with pytest.raises(ConfigError) as exc:
            load_config(path, env={})
        assert message in str(exc.value)
        assert 2 == main(["--config", str(path), "check-config"])
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: ") and message in line


def test_infinite_monitor_threshold_from_env_is_refused_naming_the_key() -> None:
    """An infinite threshold is no threshold (rmse's range is open above, not infinite)."""
    with pytest.raises(ConfigError) as exc:
        load_config(None, env={"WATCHER_MONITOR__MAX_RMSE": "inf"})
    assert "monitor.max_rmse: inf is outside the range of rmse" in str(exc.value)


# Registry webhooks (#18) -----------------------------------------------------

HOOK_ENV = {
    "WATCHER_MONITOR__WEBHOOKS__SECRET": "hook-s3cret",
    "WATCHER_HTTP__LISTEN": "127.0.0.1:9464",
}


def _errors(env: dict[str, str], **overrides: object) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(env=env, overrides=overrides)
    return "\n".join(err.value.errors)


def test_webhooks_enabled_by_a_secret_with_their_url_and_masked() -> None:
    cfg = load_config(env=HOOK_ENV)
    assert cfg.monitor.webhooks.enabled
    assert "http://127.0.0.1:9464/hooks/mlflow" == cfg.webhook_url
    assert REDACTED == cfg.redacted()["monitor"]["webhooks"]["secret"]
    assert "hook-s3cret" in cfg.secret_values()
    assert not load_config(env={}).monitor.webhooks.enabled


def test_webhooks_refused_without_listen_in_stage_mode_or_on_a_wildcard() -> None:
    no_listen = _errors({"WATCHER_MONITOR__WEBHOOKS__SECRET": "x"})
    assert "monitor.webhooks.secret" in no_listen and "http.listen" in no_listen
    stage = _errors(HOOK_ENV, **{"mlflow.registry_mode": "stage"})
    assert "registry_mode" in stage
    wild = _errors(
        {**HOOK_ENV, "WATCHER_HTTP__LISTEN": "0.0.0.0:9464"}, **{"http.allow_public": True}
    )
    assert "monitor.webhooks.url" in wild
    assert "monitor.webhooks.secret: must not be empty" in _errors(
        {**HOOK_ENV, "WATCHER_MONITOR__WEBHOOKS__SECRET": " "}
    )


def test_webhook_secret_never_in_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[http]\nlisten = '127.0.0.1:9464'\n[monitor.webhooks]\nsecret = 'x'\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert "WATCHER_MONITOR__WEBHOOKS__SECRET" in "\n".join(err.value.errors)


@pytest.mark.parametrize("tolerance", ["5s", "2h"])
def test_webhook_tolerance_is_bounded(tolerance: str) -> None:
    text = _errors({**HOOK_ENV, "WATCHER_MONITOR__WEBHOOKS__TOLERANCE": tolerance})
    assert "monitor.webhooks.tolerance: must be between 10s and 1h" in text


def test_reconcile_interval_never_shorter_than_the_poll() -> None:
    assert 300.0 == load_config(env={}).monitor.reconcile_interval
    long_poll = load_config(env={}, overrides={"monitor.poll_interval": "1h"})
    assert 3600.0 == long_poll.monitor.reconcile_interval  # left unset: follows the poll
    shorter = {"monitor.poll_interval": "10m", "monitor.reconcile_interval": "5m"}
    text = _errors(HOOK_ENV, **shorter)
    assert "monitor.reconcile_interval: 5m is shorter than monitor.poll_interval (10m)" in text


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("monitor.reconcile_interval", "10m"),
        ("monitor.webhooks.tolerance", "1m"),
        ("monitor.webhooks.url", "https://x.example/hooks/mlflow"),
    ],
)
def test_webhook_keys_without_the_secret_are_refused(key: str, value: str) -> None:
    """Shown by check-config, they would do nothing: refused, naming the key."""
    text = _errors({}, **{key: value})
    assert f"{key}: has no effect without" in text and "monitor.webhooks.secret" in text


class TestPrometheusConfig:
    """``[monitor.prometheus]``: every key takes effect or is refused, naming it."""

    GOOD = (
        '[monitor.prometheus]\nurl = "http://prom:9090"\n'
        'value_query = \'acc{model="{model}",version="{version}"}\'\n'
        "samples_query = 'n{model=\"{model}\"}'\n"
    )

    def load(self, tmp_path: Path, text: str, **env: str) -> Config:
        return load_config(write(tmp_path, text), env=env)

    def test_good_config_and_defaults(self, tmp_path: Path) -> None:
        prom = self.load(tmp_path, self.GOOD).monitor.prometheus
        assert ("http://prom:9090", 10.0, 300.0) == (prom.url, prom.timeout, prom.down_alert_after)
        assert frozenset({"model", "version"}) == prom.template("value_query").names

    @pytest.mark.parametrize(
        ("extra", "error"),
        [
            (
                '[monitor.prometheus]\ntimeout = "5s"\n',
                "monitor.prometheus.timeout: has no effect without monitor.prometheus.url",
            ),
            (
                '[monitor.prometheus]\nurl = "http://p:9090"\n'
                "value_query = 'a{model=\"{model}\"}'\n",
                "monitor.prometheus.samples_query: required when monitor.prometheus.url is set",
            ),
            ('[monitor.prometheus]\nurl = "file:///x"\n', "monitor.prometheus.url: not a URL"),
        ],
    )
    def test_incomplete_is_refused(self, tmp_path: Path, extra: str, error: str) -> None:
        with pytest.raises(ConfigError, match=re.escape(error)):
            self.load(tmp_path, extra)

    @pytest.mark.parametrize(
        ("key", "value", "error"),
        [
            ("value_query", 'a{model="{modl}"}', "unknown placeholder {modl}"),
            ("samples_query", "a{model={model}}", "{model} must stand inside a double-quoted"),
            ("value_query", 'sum(a{model="{model}"}', "unclosed '('"),
            ("timeout", "5m", "must be at most 120s, got 300s"),
            ("timeout", "0s", "must be greater than 0"),
            ("down_alert_after", "-1s", "must not be negative"),
        ],
    )
    def test_bad_values_name_the_key(
        self, tmp_path: Path, key: str, value: str, error: str
    ) -> None:
        env = {f"WATCHER_MONITOR__PROMETHEUS__{key.upper()}": value}
        with pytest.raises(ConfigError) as info:
            self.load(tmp_path, self.GOOD, **env)
        (line,) = info.value.errors
        assert line.startswith(f"monitor.prometheus.{key}: ") and error in line, line

    def test_each_model_must_read_its_own_series(self, tmp_path: Path) -> None:
        text = (
            '[monitor.prometheus]\nurl = "http://p:9090"\n'
            'value_query = \'a{model="{model}"}\'\nsamples_query = "n"\n'
        )
        with pytest.raises(ConfigError, match=r"monitor.prometheus.samples_query: needs \{model\}"):
            self.load(tmp_path, text)
        one = '[monitor]\nmodels = ["fraud"]\n' + text  # one exact model: no need to say it
        assert self.load(tmp_path, one).monitor.prometheus.samples_query == "n"

    def test_a_mixed_fleet_needs_the_metric_placeholder(self, tmp_path: Path) -> None:
        fleet = '[monitor.overrides."house-*"]\nmax_rmse = 40\n'
        with pytest.raises(ConfigError, match=r"value_query: needs \{metric\}: .*accuracy, rmse"):
            self.load(tmp_path, self.GOOD + fleet)
        good = self.GOOD.replace('version="{version}"', 'metric="{metric}"')
        assert self.load(tmp_path, good + fleet).monitor.prometheus.url

    def test_token_is_a_secret(self, tmp_path: Path) -> None:
        with pytest.raises(
            ConfigError, match=r"monitor\.prometheus\.token: secrets may not be written"
        ):
            self.load(tmp_path, self.GOOD + 'token = "abc"\n')
        (tmp_path / "tok").write_text("s3cret-token\n")
        cfg = self.load(tmp_path, self.GOOD + f'token_file = "{tmp_path / "tok"}"\n')
        assert cfg.monitor.prometheus.token is not None
        assert "s3cret-token" == cfg.monitor.prometheus.token.get_secret_value()
        assert REDACTED == cfg.redacted()["monitor"]["prometheus"]["token"]
        assert "s3cret-token" in cfg.secret_values()
