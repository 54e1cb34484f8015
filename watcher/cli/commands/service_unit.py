"""`watcher service-unit`: print a hardened systemd unit for this watcher."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("service-unit")
@click.option("--user", "user_unit", is_flag=True, help="A user unit (systemctl --user).")
@click.option(
    "--template",
    is_flag=True,
    help="A template unit registry-watcher@.service: instance NAME reads "
    "/etc/registry-watcher/NAME.toml and keeps its state in StateDirectory=registry-watcher/NAME.",
)
@click.option(
    "--exec",
    "exec_path",
    default=None,
    help="Path of the watcher executable in ExecStart= (default: /usr/local/bin/watcher).",
)
@click.pass_context
def service_unit(
    ctx: click.Context, user_unit: bool, template: bool, exec_path: str | None
) -> None:
    """Print a hardened systemd unit (Type=notify, sandboxed) for this watcher.

    --config (before or after the command) is the config file the service runs
    with; its data/state dirs and secret files shape the unit. Without it the
    service runs on embedded defaults inside its state directory
    (/var/lib/registry-watcher, or ~/.local/state/registry-watcher with --user).
    With --template, each instance has its own config and state directory, and
    watches only its own pipeline.model_name unless its config sets monitor.models.
    """
    from watcher.cli.service_unit import DEFAULT_EXEC, UnitSpec, render_unit, spec_from_config
    from watcher.errors import UsageError

    config_path: Path | None = ctx.obj.config_path
    exe = exec_path or DEFAULT_EXEC
    if not exe.startswith("/"):
        raise UsageError(f"--exec: {exe!r} must be an absolute path")
    if template and config_path is not None:
        raise UsageError(
            "--template: each instance reads /etc/registry-watcher/NAME.toml; "
            "--config does not apply"
        )
    if config_path is None:
        spec = UnitSpec(user=user_unit, template=template, exec_path=exe)
    else:
        path = config_path.resolve()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{config_path}: cannot read config file: {exc.strerror}") from None
        spec = spec_from_config(text, str(path), user=user_unit, exec_path=exe)
    click.echo(render_unit(spec), nl=False)
