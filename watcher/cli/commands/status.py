"""`watcher status [--json]`: data, triggers, models and daemon health at a glance."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


@click.command("status")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object (schema: docs/status.schema.json)."
)
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> None:
    """Show data, trigger, model and health status at a glance.

    Reads the state DB only (read-only, safe while the daemon runs); the daemon's
    health comes from its heartbeat, and a stale heartbeat means it is not running.
    """
    from datetime import UTC, datetime

    from alerts.redaction import redact_data
    from watcher.cli.status import collect, open_readonly

    cfg = ctx.obj.config()
    conn = open_readonly(cfg.state.dir)
    try:
        doc = collect(
            conn, data_dir=cfg.watch.data_dir, state_dir=cfg.state.dir, now=datetime.now(UTC)
        )
        # Errors stored by an older release (or echoed by a server) may hold a secret.
        doc = redact_data(doc)
    finally:
        if conn is not None:
            conn.close()
    if as_json:
        click.echo(json.dumps(doc, sort_keys=True))
        return
    import sys

    from rich.console import Console

    # Piped (mail, logs, tests): wide enough that model names and hashes are not cut.
    render(doc, Console(highlight=False, width=None if sys.stdout.isatty() else 160))


def _short(value: object, n: int = 12) -> str:
    return "—" if value is None else str(value)[:n]


def _pct(value: object) -> str:
    return "—" if not isinstance(value, int | float) else f"{value:.1%}"


def _live(model: dict[str, Any]) -> str:
    """Live accuracy as a percentage (as always shown); any other metric named: rmse 41.2."""
    metric, value = model.get("live_metric"), model.get("live_value")
    if metric in (None, "accuracy"):
        return _pct(model["live_accuracy"])
    return "—" if not isinstance(value, int | float) else f"{metric} {value:.4g}"


def _daemon_state(daemon: dict[str, Any]) -> str:
    if daemon["running"]:
        health = "[green]healthy[/]" if daemon["healthy"] else "[red]unhealthy[/]"
        return f"running (pid {daemon['pid']}), {health}"
    if daemon["heartbeat_at"]:
        return f"[yellow]not running[/] (last heartbeat {daemon['heartbeat_at']})"
    return "[yellow]not running[/] (never started on this state dir)"


def render(doc: dict[str, Any], console: Console) -> None:
    """The human view of the status document."""
    console.print(_summary(doc))
    if doc["models"]:
        console.print(_models(doc["models"]))
    daemon = doc["daemon"]
    failing = {k: v for k, v in daemon["checks"].items() if isinstance(v, dict) and not v.get("ok")}
    if daemon["running"] and failing:
        console.print(_failing_checks(failing))


def _summary(doc: dict[str, Any]) -> Table:
    from rich.table import Table

    ds, trig, outbox = doc["dataset"], doc["last_trigger"], doc["outbox"]
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("daemon", _daemon_state(doc["daemon"]))
    summary.add_row("data dir", doc["data_dir"])
    summary.add_row("state dir", doc["state_dir"])
    current = _short(ds["current_hash"])
    if ds["file_count"] is not None:
        current += f"  ({ds['file_count']} files, {ds['bytes']} bytes, seen {ds['seen_at']})"
    summary.add_row("current hash", current)
    if trig is None:
        summary.add_row("last trigger", "—")
    else:
        run_state = trig["run_state"] or "not started"
        summary.add_row("last trigger", f"{_short(trig['data_hash'])}  {trig['created_at']}")
        summary.add_row("last run", f"{trig['run_id']}: {trig['status']}, run {run_state}")
    dag = doc.get("dag")
    if dag and dag["paused"]:
        summary.add_row("DAG", f"[red]{dag['dag_id']} is paused[/] since {dag['since']}")
        summary.add_row("", "its runs stay queued until it is unpaused:")
        summary.add_row("", str(dag["unpause"]))
    by_status = ", ".join(f"{k} {v}" for k, v in outbox["by_status"].items())
    summary.add_row(
        "outbox", f"{outbox['depth']} pending" + (f" ({by_status})" if by_status else "")
    )
    return summary


def _models(models: list[dict[str, Any]]) -> Table:
    from rich.table import Table

    table = Table(title="models", title_justify="left")
    for col in ("model", "production", "training acc.", "live", "alert", "last rollback"):
        table.add_column(col)
    for m in models:
        rb = m["last_rollback"]
        rollback = (
            "—"
            if rb is None
            else f"v{rb['from_version']}→v{rb['to_version']} {rb['step']} {rb['at']}"
        )
        alert = m["alert_state"] or "—"
        if alert == "firing":
            alert = "[red]firing[/]"
        table.add_row(
            m["name"],
            "—" if m["production_version"] is None else f"v{m['production_version']}",
            _pct(m["training_accuracy"]),
            _live(m),
            alert,
            rollback,
        )
    return table


def _failing_checks(failing: dict[str, dict[str, Any]]) -> Table:
    from rich.table import Table

    checks = Table(title="failing checks", title_justify="left")
    checks.add_column("component")
    checks.add_column("detail")
    for name, detail in sorted(failing.items()):
        shown = {k: v for k, v in detail.items() if k != "ok"}
        checks.add_row(name, json.dumps(shown, default=str))
    return checks
