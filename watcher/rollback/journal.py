"""Rollback as a journaled sequence: intent → moved → tagged → done.

Each step is committed to ``rollback_journal`` before the next starts, and
each step is idempotent, so after kill -9 at any point :meth:`Rollbacker.recover`
completes the rollback. Production is moved by one registry call (alias move,
or a stage transition that archives the old version in the same call), so the
registry is never left without a Production version.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alerts import make_alert
from watcher.errors import RollbackRefused
from watcher.ports import (
    TAG_QUARANTINED,
    TAG_ROLLBACK_REASON,
    TAG_ROLLED_BACK_AT,
    TAG_ROLLED_BACK_BY,
    quarantine_tags,
)
from watcher.runtime.faults import fault_point
from watcher.runtime.logging import get_logger
from watcher.runtime.state import META_ROLLBACK_HANDLED, iso

if TYPE_CHECKING:
    from watcher.ports import AlertSink, Registry
    from watcher.runtime.clock import Clock
    from watcher.runtime.state import StateStore

log = get_logger("watcher.rollback.journal")

STEPS = ("intent", "moved", "tagged", "done")
TAG_RESTORED_FROM = "watcher.restored_from"


class Handled:
    """Breach episodes automatic rollback must leave alone, per (model, version), in the DB.

    A version the daemon rolled back (or refused to, or previewed in dry-run mode), or one
    an operator put into Production by hand (a rollback or an undo), is not rolled back
    automatically again until its breach episode ends: the monitor sees it in Production
    and not breaching (:meth:`clear`). Kept in the state DB, so it survives restarts, and
    shared with `watcher rollback`, which runs in another process: always read, never cached.
    """

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def _load(self) -> dict[str, dict[str, str]]:
        raw = self.state.get_meta(META_ROLLBACK_HANDLED)
        data = json.loads(raw) if raw else {}
        return data if isinstance(data, dict) else {}

    def why(self, model: str, version: str) -> str | None:
        found = self._load().get(model, {}).get(version)
        return None if found is None else str(found)

    def mark(self, model: str, version: str, why: str, conn: sqlite3.Connection) -> None:
        """Inside the caller's transaction, with the act it records."""
        data = self._load()
        data.setdefault(model, {})[version] = why
        self.state.set_meta(META_ROLLBACK_HANDLED, json.dumps(data, sort_keys=True), conn=conn)

    def clear(self, model: str, version: str) -> bool:
        """The breach episode of ``version`` ended; True if there was something to forget."""
        if self.why(model, version) is None:
            return False
        with self.state.transaction() as tx:
            data = self._load()
            data.get(model, {}).pop(version, None)
            if not data.get(model):
                data.pop(model, None)
            self.state.set_meta(META_ROLLBACK_HANDLED, json.dumps(data, sort_keys=True), conn=tx)
        return True


@dataclass(frozen=True, slots=True)
class Plan:
    model: str
    from_version: str
    to_version: str
    reason: str
    actor: str
    undo: bool = False  # returning to a quarantined version: clear its quarantine


@dataclass(frozen=True, slots=True)
class Outcome:
    journal_id: int | None
    plan: Plan
    dry_run: bool
    recovered: bool = False

    @property
    def message(self) -> str:
        p = self.plan
        verb = (
            "would roll back" if self.dry_run else ("undid rollback" if p.undo else "rolled back")
        )
        return f"{p.model}: {verb} Production v{p.from_version} → v{p.to_version} ({p.reason})"


class Rollbacker:
    """Executes plans against the registry; one instance per thread that uses it."""

    def __init__(
        self,
        registry: Registry,
        state: StateStore,
        clock: Clock,
        alerting: AlertSink | None = None,
    ) -> None:
        self.registry = registry
        self.state = state
        self.clock = clock
        self.alerting = alerting
        self.handled = Handled(state)

    # Public -----------------------------------------------------------------

    def execute(self, plan: Plan, *, dry_run: bool = False, automatic: bool = False) -> Outcome:
        if plan.from_version == plan.to_version:
            raise RollbackRefused(f"{plan.model}: v{plan.to_version} is already Production")
        if dry_run:
            outcome = Outcome(None, plan, dry_run=True)
            if not automatic:
                return outcome  # an operator's preview: printed, not recorded or notified
            with self.state.transaction() as tx:
                event_id = self.state.record(
                    "rollback.dry_run",
                    outcome.message,
                    model=plan.model,
                    version=plan.to_version,
                    payload=_payload(plan, automatic),
                    conn=tx,
                )
                self.handled.mark(plan.model, plan.from_version, "dry_run", tx)
                self._notify(outcome, event_id)
            log.warning("rollback_dry_run", message=outcome.message)
            return outcome
        now = iso(self.clock.now())
        with self.state.transaction() as tx:
            cur = tx.execute(
                "INSERT INTO rollback_journal (model, from_version, to_version, step, reason,"
                " actor, automatic, undo, started_at, updated_at)"
                " VALUES (?, ?, ?, 'intent', ?, ?, ?, ?, ?, ?)",
                (
                    plan.model,
                    plan.from_version,
                    plan.to_version,
                    plan.reason,
                    plan.actor,
                    int(automatic),
                    int(plan.undo),
                    now,
                    now,
                ),
            )
            journal_id = int(cur.lastrowid or 0)
            self.state.record(
                "rollback.started",
                f"{plan.model}: rolling back v{plan.from_version} → v{plan.to_version}",
                model=plan.model,
                version=plan.to_version,
                payload={**_payload(plan, automatic), "journal_id": journal_id},
                conn=tx,
            )
            if automatic:  # acted on: this breach episode is not rolled back twice
                self.handled.mark(plan.model, plan.from_version, "rolled_back", tx)
        fault_point("rollback_after_intent")
        return self._advance(journal_id)

    def pending(self) -> list[int]:
        rows = self.state.conn.execute(
            "SELECT id FROM rollback_journal WHERE step != 'done' ORDER BY id"
        ).fetchall()
        return [int(r[0]) for r in rows]

    def recover(self) -> list[Outcome]:
        """Finish every rollback a crash interrupted (call at start, before polling)."""
        done: list[Outcome] = []
        for journal_id in self.pending():
            log.warning("rollback_resuming", journal_id=journal_id)
            done.append(self._advance(journal_id, recovered=True))
        return done

    def automatic_times(self, model: str) -> list[str]:
        rows = self.state.conn.execute(
            "SELECT started_at FROM rollback_journal WHERE model = ? AND automatic = 1 ORDER BY id",
            (model,),
        ).fetchall()
        return [str(r[0]) for r in rows]

    # Steps ------------------------------------------------------------------

    def _load(self, journal_id: int) -> tuple[Plan, str, bool]:
        row = self.state.conn.execute(
            "SELECT model, from_version, to_version, reason, actor, undo, step, automatic"
            " FROM rollback_journal WHERE id = ?",
            (journal_id,),
        ).fetchone()
        plan = Plan(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), bool(row[5]))
        return plan, str(row[6]), bool(row[7])

    def _set_step(self, journal_id: int, step: str) -> None:
        with self.state.transaction() as tx:
            tx.execute(
                "UPDATE rollback_journal SET step = ?, updated_at = ? WHERE id = ?",
                (step, iso(self.clock.now()), journal_id),
            )

    def _advance(self, journal_id: int, *, recovered: bool = False) -> Outcome:
        plan, step, automatic = self._load(journal_id)
        if step == "intent":
            # Idempotent: after a crash the move may already have happened.
            if self.registry.production(plan.model) != plan.to_version:
                self.registry.set_production(plan.model, plan.to_version)
            self._set_step(journal_id, "moved")
            fault_point("rollback_after_moved")
            step = "moved"
        if step == "moved":
            if plan.undo:
                self._untag_undo(plan)
            else:
                self._tag_rollback(plan)
            self.registry.archive(plan.model, plan.from_version)
            self._set_step(journal_id, "tagged")
            fault_point("rollback_after_tagged")
            step = "tagged"
        outcome = Outcome(journal_id, plan, dry_run=False, recovered=recovered)
        if step == "tagged":
            with self.state.transaction() as tx:
                tx.execute(
                    "UPDATE rollback_journal SET step = 'done', updated_at = ? WHERE id = ?",
                    (iso(self.clock.now()), journal_id),
                )
                self.state.record(
                    "rollback.done",
                    outcome.message + (" [completed after restart]" if recovered else ""),
                    model=plan.model,
                    version=plan.to_version,
                    payload={
                        **_payload(plan, automatic),
                        "journal_id": journal_id,
                        "recovered": recovered,
                    },
                    conn=tx,
                )
                if not automatic:  # an operator chose this version: automatic rollback defers
                    self.handled.mark(plan.model, plan.to_version, "operator", tx)
                # In the same transaction: the notification exists iff the rollback is done.
                self._notify(outcome, journal_id)
            log.warning("rollback_done", message=outcome.message, recovered=recovered)
        return outcome

    def _tag_rollback(self, plan: Plan) -> None:
        """Quarantine the version left; the target remembers where it came from (for --undo)."""
        tags = quarantine_tags(plan.reason, self.clock.now(), plan.actor)
        self.registry.set_tags(plan.model, plan.from_version, tags)
        self.registry.set_tags(plan.model, plan.to_version, {TAG_RESTORED_FROM: plan.from_version})

    def _untag_undo(self, plan: Plan) -> None:
        """Back to the state before the rollback: the restored version loses its quarantine,
        the version left loses the rollback's mark, and nothing is quarantined (the version
        left was the healthy target of that rollback)."""
        for key in (TAG_QUARANTINED, TAG_ROLLBACK_REASON, TAG_ROLLED_BACK_AT, TAG_ROLLED_BACK_BY):
            self.registry.delete_tag(plan.model, plan.to_version, key)
        self.registry.delete_tag(plan.model, plan.from_version, TAG_RESTORED_FROM)

    def _notify(self, outcome: Outcome, sequence: int) -> None:
        if self.alerting is None:
            return
        p = outcome.plan
        alert = make_alert(
            "ModelRolledBack" if not outcome.dry_run else "ModelRollbackDryRun",
            starts_at=self.clock.now(),
            severity="critical" if not outcome.dry_run else "warning",
            summary=outcome.message,
            description=_description(outcome),
            model=p.model,
            version=p.to_version,
            from_version=p.from_version,
        )
        self.alerting.event(alert, sequence)


class JournalReader:
    """The journal as :class:`watcher.ports.ProductionMoves` (for the monitor's restore)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def moved_since(self, model: str, since: str) -> str | None:
        return moved_since(self.state, model, since)


def moved_since(state: StateStore, model: str, since: str) -> str | None:
    """Where the newest rollback of ``model`` that moved Production at or after ``since``
    (an ISO time) left it; None when none did."""
    row = state.conn.execute(
        "SELECT to_version FROM rollback_journal WHERE model = ?"
        " AND step IN ('moved', 'tagged', 'done') AND updated_at >= ? ORDER BY id DESC LIMIT 1",
        (model, since),
    ).fetchone()
    return None if row is None else str(row[0])


def _description(outcome: Outcome) -> str:
    """What happened, for people. The actor names itself (``registry-watcher (automatic)``)."""
    p = outcome.plan
    versions = f"from v{p.from_version} to v{p.to_version}"
    if outcome.dry_run:
        return (
            f"Dry run (rollback.dry_run): would move Production of {p.model} {versions}; "
            f"v{p.from_version} would be quarantined (tag {TAG_QUARANTINED}=true). "
            f"Nothing was changed. Decided by {p.actor}. Reason: {p.reason}."
        )
    moved = f"Production of {p.model} moved {versions} by {p.actor}"
    if p.undo:
        return (
            f"{moved}, undoing the rollback v{p.to_version} → v{p.from_version}. "
            f"Reason: {p.reason}. The quarantine of v{p.to_version} is cleared; "
            "nothing is quarantined."
        )
    return (
        f"{moved}. Reason: {p.reason}. "
        f"v{p.from_version} is quarantined (tag {TAG_QUARANTINED}=true)."
    )


def _payload(plan: Plan, automatic: bool) -> dict[str, object]:
    return {
        "from_version": plan.from_version,
        "to_version": plan.to_version,
        "reason": plan.reason,
        "actor": plan.actor,
        "automatic": automatic,
        "undo": plan.undo,
    }
