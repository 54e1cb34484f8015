"""Airflow callbacks, kept free of Airflow imports so they are plain, testable functions."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("pipeline.callbacks")


def failure_summary(context: Mapping[str, Any]) -> dict[str, str]:
    """The fields an alert needs, pulled defensively from an Airflow task context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    exc = context.get("exception")
    return {
        "dag_id": str(getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", "")),
        "task_id": str(getattr(ti, "task_id", "")),
        "run_id": str(context.get("run_id") or getattr(dag_run, "run_id", "")),
        "try_number": str(getattr(ti, "try_number", "")),
        "exception": f"{type(exc).__name__}: {exc}" if exc is not None else "",
    }


def on_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of train_pipeline: log now; alerts/ delivery hooks in here.

    A callback must never raise: Airflow would log the error and the alert be lost.
    """
    try:
        info = failure_summary(context)
        log.error(
            "train_pipeline task failed: dag_id=%s task_id=%s run_id=%s try=%s error=%s",
            info["dag_id"],
            info["task_id"],
            info["run_id"],
            info["try_number"],
            info["exception"],
        )
    except Exception:  # pragma: no cover - defensive
        log.exception("on_failure callback itself failed")
