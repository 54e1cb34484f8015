"""`watcher status [--json]`: data, triggers, models and daemon health at a glance."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# A cell: its text and, on a terminal, a rich style ("" for none).
Cell = tuple[str, str]


@dataclass
class Block:
    """One table of the human view; the same rows drawn by rich or as plain text."""

    title: str | None
    columns: tuple[str, ...] | None  # None: a label/value grid without a header
    rows: list[tuple[Cell, ...]] = field(default_factory=list)


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
    elif sys.stdout.isatty():
        from rich.console import Console

        render(doc, Console(highlight=False))
    else:
        # Piped (mail, logs, scripts): plain text, and no rich to import (~25 ms).
        click.echo(plain(doc), nl=False)


def blocks(doc: dict[str, Any]) -> list[Block]:
    """The human view of the status document."""
    out = [_summary(doc)]
    if doc["models"]:
        out.append(_models(doc["models"]))
    daemon = doc["daemon"]
    failing = {k: v for k, v in daemon["checks"].items() if isinstance(v, dict) and not v.get("ok")}
    if daemon["running"] and failing:
        out.append(_failing_checks(failing))
    return out


def render(doc: dict[str, Any], console: Console) -> None:
    """Draw the human view with rich (a terminal, the demo)."""
    for block in blocks(doc):
        console.print(_rich_table(block))


def plain(doc: dict[str, Any]) -> str:
    """The human view as plain text: columns aligned with spaces, no styles."""
    parts = []
    for block in blocks(doc):
        rows = [tuple(text for text, _ in row) for row in block.rows]
        if block.columns is not None:
            rows.insert(0, block.columns)
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
        lines = [block.title] if block.title else []
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)


def _rich_table(block: Block) -> Table:
    from rich.table import Table
    from rich.text import Text

    if block.columns is None:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
    else:
        table = Table(title=block.title, title_justify="left")
        for col in block.columns:
            table.add_column(col)
    for row in block.rows:
        # Text, not markup: a value holding "[...]" (an error, a name) is shown as is.
        table.add_row(*(Text(text, style=style) for text, style in row))
    return table


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


def _daemon_state(daemon: dict[str, Any]) -> Cell:
    if daemon["running"]:
        health = "healthy" if daemon["healthy"] else "unhealthy"
        return f"running (pid {daemon['pid']}), {health}", "green" if daemon["healthy"] else "red"
    if daemon["heartbeat_at"]:
        return f"not running (last heartbeat {daemon['heartbeat_at']})", "yellow"
    return "not running (never started on this state dir)", "yellow"


def _summary(doc: dict[str, Any]) -> Block:
    ds, trig, outbox = doc["dataset"], doc["last_trigger"], doc["outbox"]
    block = Block(None, None)

    def row(label: str, value: str, style: str = "") -> None:
        block.rows.append(((label, "bold"), (value, style)))

    block.rows.append((("daemon", "bold"), _daemon_state(doc["daemon"])))
    row("data dir", doc["data_dir"])
    row("state dir", doc["state_dir"])
    current = _short(ds["current_hash"])
    if ds["file_count"] is not None:
        current += f"  ({ds['file_count']} files, {ds['bytes']} bytes, seen {ds['seen_at']})"
    row("current hash", current)
    if trig is None:
        row("last trigger", "—")
    else:
        run_state = trig["run_state"] or "not started"
        row("last trigger", f"{_short(trig['data_hash'])}  {trig['created_at']}")
        row("last run", f"{trig['run_id']}: {trig['status']}, run {run_state}")
    dag = doc.get("dag")
    if dag and dag["paused"]:
        row("DAG", f"{dag['dag_id']} is paused since {dag['since']}", "red")
        row("", "its runs stay queued until it is unpaused:")
        row("", str(dag["unpause"]))
    hooks = _webhooks(doc["daemon"])
    if hooks is not None:
        row("webhooks", *hooks)
    by_status = ", ".join(f"{k} {v}" for k, v in outbox["by_status"].items())
    row("outbox", f"{outbox['depth']} pending" + (f" ({by_status})" if by_status else ""))
    return block


def _webhooks(daemon: dict[str, Any]) -> tuple[str, str] | None:
    """The running daemon's registry webhooks (its monitor check): healthy or fallback."""
    monitor = daemon["checks"].get("monitor") if daemon["running"] else None
    mode = monitor.get("webhooks") if isinstance(monitor, dict) else None
    if not isinstance(mode, str):
        return None
    if mode == "healthy":
        return "healthy (full poll every monitor.reconcile_interval)", "green"
    reason = monitor.get("webhooks_reason") if isinstance(monitor, dict) else None
    return f"fallback to monitor.poll_interval: {reason or 'unknown'}", "yellow"


def _models(models: list[dict[str, Any]]) -> Block:
    block = Block(
        "models",
        ("model", "production", "training acc.", "live", "alert", "last rollback"),
    )
    for m in models:
        rb = m["last_rollback"]
        rollback = (
            "—"
            if rb is None
            else f"v{rb['from_version']}→v{rb['to_version']} {rb['step']} {rb['at']}"
        )
        alert = m["alert_state"] or "—"
        block.rows.append(
            (
                (m["name"], ""),
                ("—" if m["production_version"] is None else f"v{m['production_version']}", ""),
                (_pct(m["training_accuracy"]), ""),
                (_live(m), ""),
                (alert, "red" if alert == "firing" else ""),
                (rollback, ""),
            )
        )
    return block


def _failing_checks(failing: dict[str, dict[str, Any]]) -> Block:
    block = Block("failing checks", ("component", "detail"))
    for name, detail in sorted(failing.items()):
        shown = {k: v for k, v in detail.items() if k != "ok"}
        block.rows.append(((name, ""), (json.dumps(shown, default=str), "")))
    return block
