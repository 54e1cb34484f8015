"""The ``registry_models`` table: what the monitor last saw of each model, every SQL on it.

The monitor's registry diff writes a row per model (Production, stages, training
accuracy); its accuracy policy adds the windowed live accuracy; `watcher status`
and the /metrics gauge restore read them back without asking MLflow.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from watcher.runtime.state import iso

if TYPE_CHECKING:
    from watcher.runtime.state import StateStore


@dataclass(frozen=True, slots=True)
class ModelRow:
    """One model as last stored: what the registry diff compares a new poll against."""

    production: str | None
    stages: dict[str, str]  # version -> stage


@dataclass(frozen=True, slots=True)
class ProductionRow:
    """What the gauges show of one model after a restart."""

    model: str
    production: str | None
    observed_at: str
    live_metric: str | None
    live_value: float | None


def load(state: StateStore) -> dict[str, ModelRow]:
    rows = state.conn.execute(
        "SELECT model, production_version, versions FROM registry_models"
    ).fetchall()
    out: dict[str, ModelRow] = {}
    for model, prod, versions in rows:
        stages = json.loads(versions)
        out[str(model)] = ModelRow(prod, stages if isinstance(stages, dict) else {})
    return out


def save(
    tx: sqlite3.Connection,
    model: str,
    row: ModelRow,
    now: datetime,
    training_accuracy: float | None,
) -> None:
    tx.execute(
        "INSERT INTO registry_models (model, production_version, versions, observed_at,"
        " training_accuracy) VALUES (?, ?, ?, ?, ?) ON CONFLICT(model) DO UPDATE SET"
        " production_version = excluded.production_version,"
        " versions = excluded.versions, observed_at = excluded.observed_at,"
        " training_accuracy = excluded.training_accuracy",
        (
            model,
            row.production,
            json.dumps(row.stages, sort_keys=True),
            iso(now),
            training_accuracy,
        ),
    )


def delete(tx: sqlite3.Connection, model: str) -> None:
    tx.execute("DELETE FROM registry_models WHERE model = ?", (model,))


def save_live(
    state: StateStore, model: str, metric: str, value: float | None, samples: int
) -> None:
    """The latest windowed live metric, where `watcher status` reads it (``live_accuracy``
    too when the metric is accuracy, as before the metric was configurable)."""
    accuracy = value if metric == "accuracy" else None
    with state.transaction() as tx:
        tx.execute(
            "UPDATE registry_models SET live_accuracy = ?, live_samples = ?, live_metric = ?,"
            " live_value = ? WHERE model = ?",
            (accuracy, samples, metric, value, model),
        )


def production_rows(state: StateStore) -> list[ProductionRow]:
    rows = state.conn.execute(
        "SELECT model, production_version, observed_at, live_metric, live_value,"
        " live_accuracy FROM registry_models"
    ).fetchall()
    return [
        ProductionRow(
            str(m),
            None if p is None else str(p),
            str(at),
            # Rows saved before the metric was recorded (schema 5) held accuracy only.
            metric or ("accuracy" if accuracy is not None else None),
            value if metric else accuracy,
        )
        for m, p, at, metric, value, accuracy in rows
    ]
