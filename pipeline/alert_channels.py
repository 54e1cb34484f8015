"""Alert channels for code that runs outside the daemon (Airflow workers), built from env.

The variable names are the watcher's own config keys (``WATCHER_<SECTION>__<KEY>``),
so one environment serves the daemon and the DAG:

    WATCHER_ALERTS__FILE                  JSONL file (appended, created 0600)
    WATCHER_ALERTS__WEBHOOK__URL          Alertmanager-v4 webhook (secret)
    WATCHER_ALERTS__WEBHOOK__SECRET       optional HMAC secret for it (secret)
    WATCHER_ALERTS__SLACK__WEBHOOK_URL    Slack incoming webhook (secret)
    WATCHER_ALERTS__ALERTMANAGER__URL     Alertmanager base URL

Secrets may also come from ``<NAME>_FILE`` (relative paths resolve in
``$CREDENTIALS_DIRECTORY``), as in the watcher. Imports of alerts/ stay inside
the function: the DAG file imports this package and must parse fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alerts import Notifier

PREFIX = "WATCHER_ALERTS__"
FILE = PREFIX + "FILE"
WEBHOOK_URL = PREFIX + "WEBHOOK__URL"
WEBHOOK_SECRET = PREFIX + "WEBHOOK__SECRET"
SLACK_URL = PREFIX + "SLACK__WEBHOOK_URL"
ALERTMANAGER_URL = PREFIX + "ALERTMANAGER__URL"
TIMEOUT_S = 10.0  # a callback holds an Airflow worker slot: fail fast


def _value(env: Mapping[str, str], name: str) -> str | None:
    """``NAME``, else the content of the file named by ``NAME_FILE``; None when unset."""
    value = env.get(name, "").strip()
    if value:
        return value
    file_name = env.get(name + "_FILE", "").strip()
    if not file_name:
        return None
    path = Path(file_name)
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if not path.is_absolute() and cred_dir:
        path = Path(cred_dir) / path
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{name}_FILE: cannot read {path}: {exc.strerror or exc}") from None
    return text or None


def channels_from_env(env: Mapping[str, str] | None = None) -> tuple[list[Notifier], list[str]]:
    """The configured channels, and one problem line per variable that could not be used.

    Problem lines name the variable, never its (secret) value.
    """
    from alerts.notifiers.alertmanager import AlertmanagerNotifier
    from alerts.notifiers.file import FileNotifier
    from alerts.notifiers.slack import SlackNotifier
    from alerts.notifiers.webhook import WebhookNotifier

    env = os.environ if env is None else env
    channels: list[Notifier] = []
    problems: list[str] = []

    def read(name: str) -> str | None:
        try:
            return _value(env, name)
        except ValueError as exc:
            problems.append(str(exc))
            return None

    file_path = read(FILE)
    if file_path:
        channels.append(FileNotifier(Path(file_path)))
    url = read(WEBHOOK_URL)
    if url:
        try:
            channels.append(
                WebhookNotifier(url, hmac_secret=read(WEBHOOK_SECRET), timeout=TIMEOUT_S)
            )
        except ValueError:
            problems.append(f"{WEBHOOK_URL}: not an http(s) URL")
    slack = read(SLACK_URL)
    if slack:
        try:
            channels.append(SlackNotifier(slack, timeout=TIMEOUT_S))
        except ValueError:
            problems.append(f"{SLACK_URL}: not an http(s) URL")
    am = read(ALERTMANAGER_URL)
    if am:
        try:
            channels.append(AlertmanagerNotifier(am, timeout=TIMEOUT_S))
        except ValueError:
            problems.append(f"{ALERTMANAGER_URL}: not an http(s) URL")
    return channels, problems
