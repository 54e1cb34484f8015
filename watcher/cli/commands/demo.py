"""`watcher demo`: the one-minute story on the real components, in a temporary dir."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option("--keep", is_flag=True, help="Keep the temporary dir afterwards (it is printed).")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    help="Run in this dir instead (new or empty; kept afterwards).",
)
@click.option(
    "--registry-mode",
    type=click.Choice(["alias", "stage"]),
    default="alias",
    show_default=True,
    help="How Production is marked in the registry.",
)
@click.option(
    "--step-timeout",
    type=click.FloatRange(min=0.1),
    default=120.0,
    show_default=True,
    help="Seconds each step may take before the demo fails (exit 1).",
)
@click.pass_context
def demo_cmd(
    ctx: click.Context, keep: bool, directory: Path | None, registry_mode: str, step_timeout: float
) -> None:
    """Run a one-minute self-contained demo in a temp dir; no servers needed.

    Sample data → v1 trained and promoted; new data → one trigger → v2 promoted;
    poor live accuracy → alert → automatic rollback to v1; then `watcher status`.
    MLflow runs on SQLite and the pipeline locally, all inside the dir; the demo
    uses its own settings, not watcher.toml or WATCHER_* variables. Exit 0 only
    if every step happened; exit 1 naming the step that did not.
    """
    import sys

    from rich.console import Console

    from watcher.cli import demo
    from watcher.extras import require
    from watcher.runtime.logging import configure

    require(["watcher demo: training on an embedded SQLite store"])

    obj = ctx.obj
    # The story is the output; component logs only for errors unless asked for.
    configure("debug" if obj.debug else (obj.log_level or "error"), obj.log_format or "auto")
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    options = demo.Options(
        directory=directory,
        keep=keep,
        registry_mode="stage" if registry_mode == "stage" else "alias",
        step_timeout=step_timeout,
    )
    try:
        demo.run(options, console, obj.registry)
    except demo.DemoFailed as exc:
        console.print(f"[bold red]✗ {exc}[/]")
        raise
