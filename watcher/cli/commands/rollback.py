"""`watcher rollback`: move Production back to the prior stable version, by hand.

Works whether or not the daemon runs: both take the short-lived rollback lock
in the state dir, and the journal makes an interrupted rollback resumable.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from watcher.monitor.policy import PolicyConfig
    from watcher.ports import Registry, VersionInfo
    from watcher.rollback.journal import Outcome, Rollbacker
    from watcher.runtime.lock import StateLock


def _describe(info: VersionInfo, metric: str, live: float | None) -> str:
    """One version for the confirmation: its training and live value of the model's
    monitored ``metric`` (the version tag of that name; the live observations of it)."""
    tags = info.tags
    data_hash = tags.get("data_hash", "?")
    parts = [
        f"v{info.version}",
        f"data_hash {data_hash[:12]}",
        f"training {metric} {tags.get(metric, '?')}",
        f"live {metric} {live:.3f}" if live is not None else f"live {metric} n/a",
    ]
    if info.quarantined:
        parts.append(f"QUARANTINED ({tags.get('watcher.rollback_reason', '')})")
    return ", ".join(parts)


def _choose_target(
    registry: Registry,
    model: str,
    current: VersionInfo,
    to_version: str | None,
    *,
    undo: bool,
    force: bool,
) -> VersionInfo:
    from watcher.errors import RollbackRefused, UsageError
    from watcher.rollback.journal import TAG_RESTORED_FROM
    from watcher.rollback.policy import prior_stable

    if undo:
        target = current.tags.get(TAG_RESTORED_FROM)
        if not target:
            raise RollbackRefused(
                f"{model}: v{current.version} is not the result of a rollback; nothing to undo"
            )
    elif to_version is not None:
        target = to_version
    else:
        found = prior_stable(current.version, lambda v: registry.get_version(model, v))
        if found.version is None:
            raise RollbackRefused(f"{model}: {found.reason}; name a version with --to")
        target = found.version
    info = registry.get_version(model, target)
    if info is None:
        raise UsageError(f"--to: {model} has no version {target}")
    if target == current.version:
        raise UsageError(f"--to: v{target} is already Production of {model}")
    if info.quarantined and not (force or undo):
        raise RollbackRefused(
            f"{model}: v{target} is quarantined "
            f"({info.tags.get('watcher.rollback_reason', 'rolled back earlier')}); "
            "use --force to return to it anyway, or --undo"
        )
    return info


def _live_values(
    registry: Registry, model: str, versions: tuple[str, str], policy: PolicyConfig
) -> dict[str, float | None]:
    """Recent live value of the policy's metric per version (over the policy's window),
    when reported; never blocks a rollback."""
    from watcher.backends.mlflow_observations import FeedbackReader
    from watcher.backends.mlflow_registry import MlflowRegistry
    from watcher.monitor.policy import window_stats
    from watcher.runtime.logging import get_logger

    out: dict[str, float | None] = dict.fromkeys(versions)
    if not isinstance(registry, MlflowRegistry):
        return out
    try:
        obs = FeedbackReader(registry).observations([(model, v) for v in versions])
    except Exception as exc:
        get_logger(__name__).warning("live_values_unavailable", error=str(exc))
        return out
    for v in versions:
        out[v] = window_stats(obs.get((model, v), []), policy.window, policy.metric)[0]
    return out


@dataclass(frozen=True, slots=True)
class _Request:
    """What the user asked for on the command line."""

    model: str
    to_version: str | None
    undo: bool
    dry_run: bool
    yes: bool
    reason: str | None
    force: bool

    def check(self) -> None:
        from watcher.errors import UsageError

        if self.undo and self.to_version:
            raise UsageError("--undo and --to cannot be combined")
        to = self.to_version
        if to is not None and (not to.isdigit() or int(to) < 1):
            raise UsageError(f"--to: {to!r} is not a model version (a positive integer)")


@click.command("rollback")
@click.option("--model", required=True, help="Registered model name.")
@click.option("--to", "to_version", help="Target version (default: the prior stable version).")
@click.option("--undo", is_flag=True, help="Return to the version the last rollback left.")
@click.option(
    "--dry-run", is_flag=True, help="Show what would happen; change, record and notify nothing."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--reason", default=None, help="Why (stored on the version and in the history).")
@click.option("--force", is_flag=True, help="Allow a quarantined target.")
@click.pass_context
def rollback_cmd(
    ctx: click.Context,
    model: str,
    to_version: str | None,
    undo: bool,
    dry_run: bool,
    yes: bool,
    reason: str | None,
    force: bool,
) -> None:
    """Move Production back to the prior stable version (or --to VERSION).

    Shows current and target with data hash, training and live value of the
    model's monitored metric (monitor.metric or its override), asks
    for confirmation on a terminal, and refuses without --yes when not on one.
    Exit 0 done, 1 backend failure, 2 bad input or refused.
    """
    from watcher.errors import UsageError
    from watcher.rollback.journal import Rollbacker
    from watcher.runtime.alerting import Alerting
    from watcher.runtime.clock import SystemClock
    from watcher.runtime.lock import ROLLBACK_LOCK_NAME, StateLock
    from watcher.runtime.state import open_state

    cfg = ctx.obj.config()
    request = _Request(model, to_version, undo, dry_run, yes, reason, force)
    request.check()
    registry = ctx.obj.registry()
    if not registry.model_exists(model):
        raise UsageError(f"--model: no registered model named {model!r}")

    state = open_state(cfg.state.dir)
    clock = SystemClock()
    alerting = Alerting(cfg, state, clock)
    rollbacker = Rollbacker(registry, state, clock, alerting)
    lock = StateLock(cfg.state.dir, "watcher rollback", ROLLBACK_LOCK_NAME)
    try:
        if not _finish_interrupted(rollbacker, lock, model, dry_run=dry_run):
            policy = cfg.monitor.policy_for(model)  # the model's metric and window
            outcome = _plan_and_run(registry, rollbacker, lock, request, policy)
            click.echo(outcome.message)
        if not dry_run:
            alerting.tick()  # deliver now; the daemon retries whatever fails
    finally:
        alerting.stop()
        state.close()


def _finish_interrupted(
    rollbacker: Rollbacker, lock: StateLock, model: str, *, dry_run: bool
) -> list[Outcome]:
    """An interrupted rollback of this model is finished first, and is the answer."""
    if dry_run:  # a preview changes, records and notifies nothing: not even a recovery
        if rollbacker.pending():
            click.echo("note: an interrupted rollback is pending; it completes on the next")
            click.echo("      `watcher rollback` without --dry-run, or when the daemon runs")
        return []
    with lock:
        finished = [o for o in rollbacker.recover() if o.plan.model == model]
    for earlier in finished:
        click.echo(f"finished an interrupted rollback: {earlier.message}")
    return finished


def _plan_and_run(
    registry: Registry,
    rollbacker: Rollbacker,
    lock: StateLock,
    request: _Request,
    policy: PolicyConfig,
) -> Outcome:
    from watcher.errors import UsageError
    from watcher.rollback.journal import Plan

    model, undo = request.model, request.undo
    current = registry.production(model)
    if current is None:
        raise UsageError(f"{model}: has no Production version to roll back from")
    current_info = registry.get_version(model, current)
    if current_info is None:
        raise UsageError(f"{model}: Production v{current} vanished while reading it")
    target_info = _choose_target(
        registry, model, current_info, request.to_version, undo=undo, force=request.force
    )
    target = target_info.version
    live = _live_values(registry, model, (current, target), policy)

    click.echo(f"model:   {model}  (registry mode: {registry.mode})")
    click.echo(f"current: {_describe(current_info, policy.metric, live[current])}")
    click.echo(f"target:  {_describe(target_info, policy.metric, live[target])}")
    why = request.reason or ("undo of the last rollback" if undo else "manual rollback")
    if not request.dry_run and not request.yes:
        if not sys.stdin.isatty():
            raise UsageError("not on a terminal: pass --yes to confirm the rollback")
        if not click.confirm(f"Move Production of {model} from v{current} to v{target}?"):
            raise UsageError("rollback cancelled")
    import getpass
    import socket

    user = f"{getpass.getuser()}@{socket.gethostname()}"
    with lock:
        if registry.production(model) != current:
            raise UsageError(f"{model}: Production changed while confirming; run again")
        return rollbacker.execute(
            Plan(model, current, target, why, user, undo=undo), dry_run=request.dry_run
        )
