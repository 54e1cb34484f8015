"""The durable trigger outbox: a trigger is committed before it is delivered.

Rows move pending → delivered (or → superseded when newer data replaced an
undelivered trigger, or, with snapshots, when the data went back to an earlier
hash), strictly in the order they were queued. Delivery is retried with
exponential backoff and jitter until the backend acknowledges it; a 409 (run
exists) is an acknowledgement, which with deterministic run ids makes delivery
idempotent. Delivered runs are then followed until they finish (trigger/delivery.py),
and their outcome goes to the history. This module holds every SQL statement on the
``outbox`` table; ``watcher status`` reads it read-only on its own connection.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from alerts.dispatcher import backoff_seconds
from alerts.redaction import redact
from watcher.runtime.state import META_LAST_DELIVERED, META_LAST_RUN, StateStore, iso

_COLS = (
    "id, run_id, data_hash, reason, conf, status, attempts, next_attempt_at, last_error, "
    "created_at, delivered_at, run_state, finished_at"
)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    run_id: str
    data_hash: str
    reason: str
    conf: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: str
    last_error: str | None
    created_at: str
    delivered_at: str | None
    run_state: str | None
    finished_at: str | None


def _row(r: tuple[Any, ...]) -> OutboxRow:
    return OutboxRow(
        r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12]
    )


def backoff(attempts: int, initial: float, maximum: float, rnd: float) -> float:
    """Seconds before retry ``attempts`` + 1: the alert dispatcher's capped, jittered
    doubling (one implementation), from ``initial`` up to ``maximum``."""
    return backoff_seconds(attempts, timedelta(seconds=initial), timedelta(seconds=maximum), rnd)


class Outbox:
    def __init__(
        self,
        state: StateStore,
        *,
        retry_initial: float = 5.0,
        retry_max: float = 600.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.state = state
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._rng = rng

    # Reads ----------------------------------------------------------------------

    def _select(self, where: str, args: tuple[Any, ...] = ()) -> list[OutboxRow]:
        # Only fixed column lists and caller-fixed clauses are interpolated.
        sql = f"SELECT {_COLS} FROM outbox WHERE {where} ORDER BY id"  # noqa: S608
        return [_row(r) for r in self.state.conn.execute(sql, args).fetchall()]

    def get(self, run_id: str) -> OutboxRow | None:
        rows = self._select("run_id = ?", (run_id,))
        return rows[0] if rows else None

    def rows(self) -> list[OutboxRow]:
        """Every trigger ever queued, oldest first."""
        return self._select("1")

    def pending(self) -> list[OutboxRow]:
        return self._select("status = 'pending'")

    def depth(self) -> int:
        """Triggers not yet delivered (status 'pending')."""
        row = self.state.conn.execute(
            "SELECT count(*) FROM outbox WHERE status = 'pending'"
        ).fetchone()
        return int(row[0])

    def following(self) -> list[OutboxRow]:
        return self._select("status = 'delivered' AND finished_at IS NULL")

    def last_delivered_hash(self) -> str | None:
        return self.state.get_meta(META_LAST_DELIVERED)

    def delivery_health(self, failing_after: int) -> tuple[dict[str, object], bool]:
        """Health detail of the queue, and whether the oldest trigger is failing (refused
        ``failing_after`` times in a row)."""
        pending = self.pending()
        detail: dict[str, object] = {
            "pending_triggers": len(pending),
            "last_delivered_hash": self.last_delivered_hash(),
        }
        if pending and pending[0].last_error:
            detail["delivery_error"] = pending[0].last_error
            detail["delivery_attempts"] = pending[0].attempts
        return detail, bool(pending) and pending[0].attempts >= failing_after

    def retrains(self) -> int:
        """Deliberate retrains queued so far; the next one's run id is numbered after them."""
        (count,) = self.state.conn.execute(
            "SELECT COUNT(*) FROM outbox WHERE run_id LIKE 'retrain__%'"
        ).fetchone()
        return int(count)

    def last_delivered_at(self) -> datetime | None:
        row = self.state.conn.execute("SELECT max(delivered_at) FROM outbox").fetchone()
        return None if row is None or row[0] is None else datetime.fromisoformat(str(row[0]))

    # Writes ---------------------------------------------------------------------

    def enqueue(
        self,
        run_id: str,
        data_hash: str,
        reason: str,
        conf: dict[str, Any],
        now: datetime,
        *,
        supersede: bool = True,
    ) -> bool:
        """Commit a pending trigger; False if it already exists. ``supersede``: older pending
        ones are dropped (their data is gone; without a snapshot they cannot run).

        A superseded row for the same run id (data went A → B → A while undelivered)
        is made pending again rather than duplicated.
        """
        at = iso(now)
        with self.state.transaction() as tx:
            superseded = 0
            if supersede:
                superseded = tx.execute(
                    "UPDATE outbox SET status = 'superseded', last_error = ? "
                    "WHERE status = 'pending' AND run_id != ?",
                    (f"superseded by {run_id}", run_id),
                ).rowcount
            existing = tx.execute(
                "SELECT status FROM outbox WHERE run_id = ?", (run_id,)
            ).fetchone()
            if existing is not None and existing[0] != "superseded":
                return False
            if existing is not None:
                # Revived: re-queued at the end, since the id is the queue order.
                tx.execute("DELETE FROM outbox WHERE run_id = ?", (run_id,))
            tx.execute(
                "INSERT INTO outbox (run_id, data_hash, reason, conf, status, attempts, "
                "next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
                (run_id, data_hash, reason, json.dumps(conf, sort_keys=True), at, at),
            )
            self.state.record(
                "trigger.queued",
                f"trigger {run_id} queued ({reason})",
                data_hash=data_hash,
                payload={"run_id": run_id, "reason": reason, "superseded": superseded, **conf},
                at=now,
                conn=tx,
            )
        return True

    def back_to_delivered(self, data_hash: str) -> None:
        """The data is back at a hash whose run was delivered before (A → B → A)."""
        self.state.set_meta(META_LAST_DELIVERED, data_hash)

    def supersede_pending(self, keep_hash: str | None, now: datetime) -> int:
        """Drop undelivered triggers for data that is no longer current."""
        with self.state.transaction() as tx:
            n = tx.execute(
                "UPDATE outbox SET status = 'superseded', last_error = ? "
                "WHERE status = 'pending' AND data_hash IS NOT ?",
                (f"data changed again before delivery ({iso(now)})", keep_hash),
            ).rowcount
        return int(n)

    def supersede_after(self, data_hash: str, now: datetime) -> int:
        """The data went back to ``data_hash``: drop the undelivered triggers queued after
        its latest row (all of them if it has none), so the last run trains current data."""
        with self.state.transaction() as tx:
            n = tx.execute(
                "UPDATE outbox SET status = 'superseded', last_error = ? "
                "WHERE status = 'pending' AND data_hash IS NOT ? "
                "AND id > COALESCE((SELECT MAX(id) FROM outbox WHERE data_hash = ?), 0)",
                (
                    f"data went back to {data_hash} before delivery ({iso(now)})",
                    data_hash,
                    data_hash,
                ),
            ).rowcount
        return int(n)

    def mark_delivered(
        self, row: OutboxRow, *, created: bool, run_state: str | None, now: datetime
    ) -> None:
        at = iso(now)
        with self.state.transaction() as tx:
            tx.execute(
                "UPDATE outbox SET status = 'delivered', attempts = attempts + 1, "
                "delivered_at = ?, run_state = ?, last_error = NULL WHERE id = ?",
                (at, run_state, row.id),
            )
            self.state.set_meta(META_LAST_DELIVERED, row.data_hash, conn=tx)
            self.state.set_meta(META_LAST_RUN, row.run_id, conn=tx)
            how = "started" if created else "already existed (counted as delivered)"
            self.state.record(
                "trigger.delivered",
                f"trigger {row.run_id} delivered: run {how}",
                data_hash=row.data_hash,
                payload={"run_id": row.run_id, "created": created, "attempts": row.attempts + 1},
                at=now,
                conn=tx,
            )

    def mark_retry(self, row: OutboxRow, error: str, *, now: datetime, permanent: bool) -> float:
        """Schedule the next attempt; returns the delay. History gets the first failure and
        each change of error text, not every retry of a long outage."""
        attempts = row.attempts + 1
        delay = backoff(attempts, self.retry_initial, self.retry_max, self._rng())
        error = redact(error)  # served by status, history and /healthz; may echo a secret
        with self.state.transaction() as tx:
            tx.execute(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
                (attempts, iso(now + timedelta(seconds=delay)), error, row.id),
            )
            if error != row.last_error:
                self.state.record(
                    "trigger.failed" if permanent else "trigger.retrying",
                    f"trigger {row.run_id} not delivered (attempt {attempts}): {error}",
                    data_hash=row.data_hash,
                    payload={
                        "run_id": row.run_id,
                        "attempts": attempts,
                        "retry_in": round(delay, 1),
                        "permanent": permanent,
                    },
                    at=now,
                    conn=tx,
                )
        return delay

    def set_run_state(
        self,
        row: OutboxRow,
        run_state: str,
        *,
        now: datetime,
        finished: bool,
        message: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Record a run's new state; terminal states go to the history as run.<state>."""
        with self.state.transaction() as tx:
            tx.execute(
                "UPDATE outbox SET run_state = ?, finished_at = ? WHERE id = ?",
                (run_state, iso(now) if finished else None, row.id),
            )
            if finished:
                kind = {"success": "run.succeeded", "failed": "run.failed"}.get(
                    run_state, f"run.{run_state}"
                )
                self.state.record(
                    kind,
                    message or f"run {row.run_id} {run_state}",
                    data_hash=row.data_hash,
                    payload={"run_id": row.run_id, "state": run_state, **(payload or {})},
                    at=now,
                    conn=tx,
                )
