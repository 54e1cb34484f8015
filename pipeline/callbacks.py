"""Airflow callbacks, kept free of Airflow imports so they are plain, testable functions.

``on_failure`` raises a ``DagRunFailed`` alert through alerts/ on the channels
configured in the worker's environment (see pipeline.alert_channels). Airflow
calls it once a task has failed for good (retries use on_retry_callback).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alerts import Alert

log = logging.getLogger("pipeline.callbacks")

ALERT_NAME = "DagRunFailed"
SEVERITY = "warning"  # Production keeps serving the previous model; a human must look
MAX_ERROR_CHARS = 500


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:MAX_ERROR_CHARS]


def failure_summary(context: Mapping[str, Any]) -> dict[str, str]:
    """The fields an alert needs, pulled defensively from an Airflow task context."""
    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    exc = context.get("exception")
    log_url = str(getattr(ti, "log_url", "") or "")
    return {
        "dag_id": str(getattr(ti, "dag_id", None) or getattr(dag_run, "dag_id", "")),
        "task_id": str(getattr(ti, "task_id", "")),
        "run_id": str(context.get("run_id") or getattr(dag_run, "run_id", "")),
        "try_number": str(getattr(ti, "try_number", "")),
        "exception": f"{type(exc).__name__}: {exc}" if exc is not None else "",
        "log_url": log_url if log_url.startswith(("http://", "https://")) else "",
    }


def failure_alert(info: Mapping[str, str], now: datetime) -> Alert:
    """The DagRunFailed alert for one failed task (identity: dag, task, run)."""
    from alerts import Alert

    error = _first_line(info.get("exception", "")) or "unknown error"
    dag_id = info.get("dag_id") or "unknown"
    task_id = info.get("task_id") or "unknown"
    try_number = info.get("try_number", "")
    tries = f" (try {try_number})" if try_number else ""
    annotations = {
        "summary": f"{dag_id}: task {task_id} failed{tries}",
        "description": error,  # the exception's first line
        "try_number": try_number,
    }
    return Alert(
        labels={
            "alertname": ALERT_NAME,
            "severity": SEVERITY,
            "dag_id": dag_id,
            "task_id": task_id,
            "run_id": info.get("run_id") or "unknown",
        },
        annotations={k: v for k, v in annotations.items() if v},
        starts_at=now,
        generator_url=info.get("log_url", ""),
    )


def send_failure_alert(
    context: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> dict[str, str | None]:
    """Deliver DagRunFailed once to every channel from env; channel -> error (None = sent)."""
    from alerts import send_now
    from pipeline.alert_channels import channels_from_env

    alert = failure_alert(failure_summary(context), now or datetime.now(UTC))
    channels, problems = channels_from_env(os.environ if env is None else env)
    for problem in problems:
        log.error("alert channel not usable: %s", problem)
    if not channels:
        log.warning(
            "no alert channel configured for %s (set WATCHER_ALERTS__FILE, __WEBHOOK__URL, "
            "__SLACK__WEBHOOK_URL or __ALERTMANAGER__URL)",
            ALERT_NAME,
        )
        return {}
    try:
        results = send_now(alert, channels)
    finally:
        for channel in channels:
            close = getattr(channel, "close", None)
            if callable(close):
                close()
    for name, error in results.items():
        if error is None:
            log.info("%s alert sent to %s", ALERT_NAME, name)
        else:
            log.error("%s alert not sent to %s: %s", ALERT_NAME, name, error)
    return results


def on_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of train_pipeline: log, then alert through alerts/.

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
        send_failure_alert(context)
    except Exception:
        log.exception("on_failure callback itself failed")
