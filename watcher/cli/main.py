"""Command line: ``main(argv) -> int``. Exit 0 ok, 1 backend failure, 2 bad input.

Keep imports here light: ``watcher --help`` must not import mlflow, sklearn or
airflow. Commands import what they need inside their bodies.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from watcher import __version__
from watcher.errors import WatcherError

if TYPE_CHECKING:
    from watcher.backends.mlflow_models import MlflowModels
    from watcher.backends.mlflow_registry import MlflowRegistry
    from watcher.config import Config

F = TypeVar("F", bound=Callable[..., Any])
HISTORY_MAX_LIMIT = 1_000_000

# True when main() is the process's entry point (not a test calling it in-process).
_process_entry = False


@dataclass
class Context:
    config_path: Path | None
    debug: bool
    log_level: str | None
    log_format: str | None
    _config: Config | None = None
    _registry: MlflowRegistry | None = None

    def config(self) -> Config:
        """Load and validate once; configure logging from it (flags win)."""
        if self._config is None:
            from watcher.config import load_config
            from watcher.runtime.logging import configure, register_secrets

            overrides: dict[str, object] = {}
            if self.log_level:
                overrides["log.level"] = self.log_level
            if self.log_format:
                overrides["log.format"] = self.log_format
            cfg = load_config(self.config_path, overrides=overrides)
            register_secrets(cfg.secret_values())
            configure("debug" if self.debug else cfg.log.level, cfg.log.format)
            self._config = cfg
        return self._config

    def registry(self, config: Config | None = None) -> MlflowRegistry:
        """The process's one MLflow adapter, built on first use from ``config`` (default:
        the loaded config; the demo passes its own). Imports no mlflow until called."""
        if self._registry is None:
            from watcher.backends.mlflow_registry import MlflowRegistry

            self._registry = MlflowRegistry.from_config(config or self.config())
        return self._registry

    def models(self) -> MlflowModels:
        """Model artifacts (profiles, models, run metrics) through :meth:`registry`."""
        from watcher.backends.mlflow_models import MlflowModels

        return MlflowModels(self.registry())


pass_ctx = click.make_pass_decorator(Context)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _global_options(**extra: Any) -> list[click.Option]:
    """The global options; on a subcommand too, so `watcher run --config X` works."""
    return [
        click.Option(
            ["--config", "config_path"],
            type=click.Path(path_type=Path, dir_okay=False),
            help="TOML config file (default: $WATCHER_CONFIG, else ./watcher.toml if present).",
            **extra,
        ),
        click.Option(
            ["--debug"], is_flag=True, help="Debug logging and tracebacks on errors.", **extra
        ),
        click.Option(
            ["--log-level"],
            type=click.Choice(["debug", "info", "warning", "error"]),
            help="Log level (overrides log.level).",
            **extra,
        ),
        click.Option(
            ["--log-format"],
            type=click.Choice(["console", "json"]),
            help="Log format; default console on a TTY, JSON lines otherwise.",
            **extra,
        ),
    ]


def _set_global(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """A global option given after the subcommand: it wins over the same one before it."""
    obj = ctx.find_object(Context)
    if obj is not None and param.name and value not in (None, False):
        setattr(obj, param.name, value)


def _with_global_options(command: click.Command) -> None:
    command.params.extend(_global_options(expose_value=False, callback=_set_global))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="watcher")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: Path | None,
    debug: bool,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """registry-watcher: watch training data and the MLflow Model Registry.

    New data triggers the Airflow DAG `train_pipeline` exactly once per dataset
    hash; the live accuracy of each Production model is watched, alerted on and,
    if enabled, rolled back.
    """
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    ctx.obj = Context(config_path, debug, log_level, log_format)


cli.params.extend(_global_options())


@cli.command()
@pass_ctx
def run(ctx: Context) -> None:
    """Run the daemon in the foreground until SIGTERM or Ctrl-C."""
    from watcher.runtime import stopping

    # First of all: a signal during the seconds of imports and start-up below stops
    # cleanly (exit 0), never with the default action.
    stop = threading.Event()
    stopping.install(stop)
    with contextlib.suppress(stopping.Stopping):  # stopped before the loop: nothing started
        _run_daemon(ctx, stop)
    if _process_entry:
        _exit_now(0)


def _run_daemon(ctx: Context, stop: threading.Event) -> None:
    from watcher.runtime import stopping

    with stopping.interruptible(stop):
        from watcher.app import build_components
        from watcher.config import check_estimator
        from watcher.extras import daemon_needs, require
        from watcher.runtime.daemon import Daemon
        from watcher.runtime.lock import held
        from watcher.runtime.logging import get_logger
        from watcher.runtime.state import open_state

        cfg = ctx.config()
        check_estimator(cfg)  # refuse to start with one no run could train
        require(daemon_needs(cfg))  # and with settings this install cannot serve
    log = get_logger("watcher")
    with held(cfg.state.dir, "watcher run"):
        state = open_state(cfg.state.dir)
        try:
            with stopping.interruptible(stop):
                daemon = Daemon(state, build_components(cfg, state), stop=stop)
            daemon.install_signal_handlers()
            log.info(
                "starting",
                version=__version__,
                data_dir=str(cfg.watch.data_dir),
                state_dir=str(cfg.state.dir),
                trigger=cfg.trigger.backend,
            )
            daemon.run()
        finally:
            state.close()


def _exit_now(code: int) -> None:
    """End the process without the interpreter's teardown. The daemon has stopped every
    component, closed the state DB and released its lock; unloading ~1,800 modules
    (mlflow, sqlalchemy, pandas) would cost 1-2 s of a busy box's 2 s stop budget, and
    joining a pool thread stuck in a slow MLflow call could cost minutes."""
    import logging

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


@cli.command("check-config")
@pass_ctx
def check_config(ctx: Context) -> None:
    """Print the effective config (secrets redacted), or every error with its field path.

    It imports and builds a configured pipeline.estimator: the config is trusted code."""
    import tomllib  # noqa: F401  (stdlib, cheap; keeps the TOML dump honest below)

    from watcher.config import check_estimator
    from watcher.extras import daemon_needs, require

    cfg = ctx.config()
    check_estimator(cfg)
    require(daemon_needs(cfg))
    click.echo(json.dumps(cfg.redacted(), indent=2, sort_keys=False))


@cli.command("hash")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.option("--manifest", is_flag=True, help="Print the manifest (sha256sum format).")
@pass_ctx
def hash_cmd(ctx: Context, directory: Path, as_json: bool, manifest: bool) -> None:
    """Print the dataset hash of DIRECTORY (reproducible with coreutils, see README)."""
    from pipeline.lineage import DatasetPathError, compute_manifest
    from watcher.errors import UsageError

    cfg = ctx.config()
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory")
    try:
        result = compute_manifest(
            directory, cfg.watch.ignore, follow_symlinks=cfg.watch.follow_symlinks
        )
    except DatasetPathError as exc:
        raise UsageError(f"{directory}/{exc}") from None
    except OSError as exc:  # unreadable, or gone mid-walk: the file is named
        raise UsageError(f"{exc.filename or directory}: {exc.strerror or exc}") from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "data_dir": str(directory),
                    "data_hash": result.dataset_hash,
                    "file_count": len(result.entries),
                    "bytes": result.total_bytes,
                    **(
                        {
                            "files": [
                                {"path": e.path, "sha256": e.sha256, "size": e.size}
                                for e in result.entries
                            ]
                        }
                        if manifest
                        else {}
                    ),
                }
            )
        )
    elif manifest:
        sys.stdout.buffer.write(result.text())
    else:
        click.echo(result.dataset_hash)


@cli.command()
@click.option("--since", help="Only events at or after this ISO time (e.g. 2026-01-31T00:00Z).")
@click.option("--model", help="Only events of this model.")
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=HISTORY_MAX_LIMIT),  # SQLite integers are 64-bit
    default=200,
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines, one event each.")
@pass_ctx
def history(ctx: Context, since: str | None, model: str | None, limit: int, as_json: bool) -> None:
    """The audit log: triggers, runs, promotions, alerts, rollbacks."""
    from datetime import UTC, datetime

    from alerts.redaction import redact, redact_data
    from watcher.cli.status import read_events
    from watcher.errors import UsageError

    cfg = ctx.config()
    since_dt = None
    if since:
        try:
            since_dt = datetime.fromisoformat(since)
        except ValueError:
            raise UsageError(f"--since: {since!r} is not an ISO 8601 time") from None
        if since_dt.tzinfo is None:
            since_dt = since_dt.replace(tzinfo=UTC)
    events = read_events(cfg.state.dir, since=since_dt, model=model, limit=limit)
    if events is None:
        click.echo(f"no history yet (no state database in {cfg.state.dir})", err=True)
        return
    for ev in events:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "id": ev.id,
                        "at": ev.at,
                        "kind": ev.kind,
                        "model": ev.model,
                        "version": ev.version,
                        "data_hash": ev.data_hash,
                        "message": redact(ev.message),
                        "payload": redact_data(ev.payload),
                    }
                )
            )
        else:
            click.echo(f"{ev.at}  {ev.kind:<22} {redact(ev.message)}")


# Commands with their own modules: each imports only click at module level, so
# `watcher --help` stays fast; mlflow, sklearn and rich load inside the command.
from watcher.cli.commands.demo import demo_cmd  # noqa: E402
from watcher.cli.commands.drift import drift_cmd  # noqa: E402
from watcher.cli.commands.report_accuracy import (  # noqa: E402
    report_accuracy_cmd,
    report_metric_cmd,
)
from watcher.cli.commands.rollback import rollback_cmd  # noqa: E402
from watcher.cli.commands.service_unit import service_unit  # noqa: E402
from watcher.cli.commands.status import status_cmd  # noqa: E402
from watcher.cli.commands.webhooks import webhooks_cmd  # noqa: E402

for _command in (
    status_cmd,
    rollback_cmd,
    report_accuracy_cmd,
    report_metric_cmd,
    drift_cmd,
    service_unit,
    demo_cmd,
    webhooks_cmd,
):
    cli.add_command(_command)
for _command in cli.commands.values():
    _with_global_options(_command)
    for _sub in getattr(_command, "commands", {}).values():  # a group's subcommands too
        _with_global_options(_sub)


def _one_line(text: str) -> str:
    """Control characters escaped (a value may hold a CR or a newline): one error, one line."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code instead of raising SystemExit."""
    global _process_entry  # noqa: PLW0603  (set once, by the console script)
    _process_entry = argv is None
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        cli.main(args=args, prog_name="watcher", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        # Bad arguments: one line plus the usage hint, exit 2.
        click.echo(f"error: {_one_line(exc.format_message())}", err=True)
        return 2
    except WatcherError as exc:
        if debug:
            traceback.print_exc()
        from watcher.runtime.logging import redact_text

        errors = getattr(exc, "errors", None) or [str(exc)]
        for line in errors:  # a backend's message may quote a URL with its password
            click.echo(f"error: {_one_line(redact_text(line))}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        else:
            from watcher.runtime.logging import redact_text

            text = redact_text(f"{type(exc).__name__}: {exc}")
            click.echo(f"error: {_one_line(text)} (use --debug for a traceback)", err=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
