"""``watcher webhooks install | status | remove``: the watcher's registry webhook in MLflow.

Ours is the webhook named ``registry-watcher`` that calls ``monitor.webhooks.url``
(default ``http://<http.listen>/hooks/mlflow``); a team's other webhooks are never
touched. Exit 2 for a config without webhooks (no secret, no http.listen), 1 when
MLflow fails.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from watcher.backends.mlflow_webhooks import MlflowWebhooks
    from watcher.config import Config
    from watcher.ports import WebhookInfo, WebhookTest


def _setup(ctx: click.Context) -> tuple[Config, MlflowWebhooks, str]:
    from watcher.backends.mlflow_webhooks import MlflowWebhooks
    from watcher.errors import UsageError

    cfg: Config = ctx.obj.config()
    if cfg.monitor.webhooks.secret is None:
        raise UsageError(
            "monitor.webhooks.secret is not set: set WATCHER_MONITOR__WEBHOOKS__SECRET or "
            "monitor.webhooks.secret_file (and http.listen, where the receiver is served)"
        )
    return cfg, MlflowWebhooks(ctx.obj.registry()), cfg.webhook_url


def _hook(info: WebhookInfo) -> dict[str, Any]:
    return {
        "id": info.webhook_id,
        "url": info.url,
        "events": list(info.events),
        "status": info.status,
    }


def _test(test: WebhookTest) -> dict[str, Any]:
    return {"success": test.success, "http_status": test.status, "error": test.error}


def _test_line(test: WebhookTest) -> str:
    if test.success:
        return f"test delivery: ok (HTTP {test.status})"
    detail = test.error or f"HTTP {test.status}"
    return f"test delivery: FAILED ({detail}); is `watcher run` up and reachable at the URL?"


@click.group("webhooks")
def webhooks_cmd() -> None:
    """The registry webhook MLflow calls on each model change (see README: Registry
    webhooks). Needs monitor.webhooks.secret and http.listen."""


@webhooks_cmd.command("install")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def install_cmd(ctx: click.Context, as_json: bool) -> None:
    """Create our webhook in MLflow (or update it: idempotent), then test it.

    Exit 0 when installed, even if the test delivery failed (the daemon may not run
    yet: the report says so); 1 when MLflow fails; 2 without webhook config.
    """
    cfg, hooks, url = _setup(ctx)
    secret = cfg.monitor.webhooks.secret
    assert secret is not None  # noqa: S101  (checked by _setup)
    info, created = hooks.install(url, secret.get_secret_value())
    test = hooks.test(info.webhook_id)
    if as_json:
        doc = {"created": created, "webhook": _hook(info), "test": _test(test)}
        click.echo(json.dumps(doc))
        return
    click.echo(f"{'created' if created else 'updated'} webhook {info.webhook_id} -> {url}")
    click.echo(f"events: {', '.join(info.events)}")
    click.echo(_test_line(test))


@webhooks_cmd.command("status")
@click.option("--test", "run_test", is_flag=True, help="Ask MLflow for a test delivery now.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def status_cmd(ctx: click.Context, run_test: bool, as_json: bool) -> None:
    """Our webhook in MLflow (url, events, status) and the daemon's last check of it."""
    cfg, hooks, url = _setup(ctx)
    info = hooks.find(url)
    test = hooks.test(info.webhook_id) if run_test and info is not None else None
    daemon = _daemon_view(cfg)
    if as_json:
        doc = {
            "url": url,
            "webhook": None if info is None else _hook(info),
            "test": None if test is None else _test(test),
            "daemon": daemon,
        }
        click.echo(json.dumps(doc))
        return
    if info is None:
        click.echo(f"no webhook of ours calls {url} (run `watcher webhooks install`)")
    else:
        click.echo(f"webhook {info.webhook_id} -> {info.url}: {info.status}")
        click.echo(f"events: {', '.join(info.events)}")
    if test is not None:
        click.echo(_test_line(test))
    if daemon is None:
        click.echo("daemon: not running")
    else:
        reason = f" ({daemon['reason']})" if daemon.get("reason") else ""
        checked = daemon.get("checked_at") or "not yet"
        click.echo(f"daemon: {daemon['webhooks']}{reason}; last check {checked}")


def _daemon_view(cfg: Config) -> dict[str, Any] | None:
    """The running daemon's view (its heartbeat's monitor check), from the state DB."""
    from datetime import UTC, datetime

    from watcher.cli.status import collect, open_readonly

    conn = open_readonly(cfg.state.dir)
    try:
        doc = collect(
            conn, data_dir=cfg.watch.data_dir, state_dir=cfg.state.dir, now=datetime.now(UTC)
        )
    finally:
        if conn is not None:
            conn.close()
    daemon = doc["daemon"]
    monitor = daemon["checks"].get("monitor") if daemon["running"] else None
    if not isinstance(monitor, dict) or "webhooks" not in monitor:
        return None
    return {
        "webhooks": monitor["webhooks"],
        "reason": monitor.get("webhooks_reason"),
        "checked_at": monitor.get("webhooks_checked_at"),
    }


@webhooks_cmd.command("remove")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def remove_cmd(ctx: click.Context, as_json: bool) -> None:
    """Delete our webhook from MLflow (only ours: named registry-watcher, calling our URL).
    The daemon falls back to monitor.poll_interval at its next check."""
    _cfg, hooks, url = _setup(ctx)
    removed = hooks.remove(url)
    if as_json:
        click.echo(json.dumps({"url": url, "removed": removed}))
    elif removed:
        click.echo(f"removed webhook {', '.join(removed)} ({url})")
    else:
        click.echo(f"no webhook of ours calls {url}: nothing to remove")
