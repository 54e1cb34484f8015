"""Alert delivery inside the daemon: notifiers built from config, a Dispatcher on the state DB.

Components raise alerts through the one ``watcher.ports.AlertSink`` this implements:
:meth:`Alerting.evaluate` (a full set of active alerts per source, lifecycle decided
by ``alerts.lifecycle``) or :meth:`Alerting.events` (one-off notifications such as
"v3 is now Production").
Delivery happens in :meth:`tick`, persisted first, retried with backoff, so a
failing channel never blocks the loop, the poller or a rollback.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from alerts import Alert, AlertStore, Dispatcher, Notification, NotificationKind
from alerts.notifiers.alertmanager import AlertmanagerNotifier
from alerts.notifiers.email import EmailNotifier
from alerts.notifiers.file import FileNotifier
from alerts.notifiers.log import LogNotifier
from alerts.notifiers.slack import SlackNotifier
from alerts.notifiers.webhook import WebhookNotifier
from watcher.runtime.component import Health
from watcher.runtime.logging import get_logger
from watcher.runtime.metrics import METRICS

if TYPE_CHECKING:
    from alerts import Notifier
    from watcher.config import Config
    from watcher.runtime.clock import Clock
    from watcher.runtime.state import StateStore

log = get_logger("watcher.runtime.alerting")
DELIVER_EVERY = 1.0


def build_notifiers(config: Config) -> list[Notifier]:
    """Every configured channel; log and file are on by default."""
    cfg = config.alerts
    out: list[Notifier] = []
    if cfg.log:
        out.append(LogNotifier())
    out.append(FileNotifier(config.alerts_file))
    if cfg.alertmanager.url:
        out.append(
            AlertmanagerNotifier(
                cfg.alertmanager.url,
                resend_interval=timedelta(seconds=cfg.alertmanager.resend_interval),
            )
        )
    if cfg.webhook.url is not None:
        out.append(
            WebhookNotifier(
                cfg.webhook.url.get_secret_value(),
                hmac_secret=cfg.webhook.secret.get_secret_value() if cfg.webhook.secret else None,
            )
        )
    if cfg.slack.webhook_url is not None:
        out.append(SlackNotifier(cfg.slack.webhook_url.get_secret_value()))
    if cfg.email.host:
        out.append(
            EmailNotifier(
                host=cfg.email.host,
                port=cfg.email.port,
                security=cfg.email.security,
                username=cfg.email.username,
                password=cfg.email.password.get_secret_value() if cfg.email.password else None,
                from_addr=cfg.email.sender,
                to_addrs=cfg.email.to,
                timeout=cfg.email.timeout,
            )
        )
    return out


class Alerting:
    """The daemon component that owns the alert dispatcher."""

    name = "alerts"

    def __init__(
        self,
        config: Config,
        state: StateStore,
        clock: Clock,
        notifiers: Sequence[Notifier] | None = None,
    ) -> None:
        self.clock = clock
        self.dispatcher = Dispatcher(
            AlertStore(state.conn),
            notifiers if notifiers is not None else build_notifiers(config),
            repeat_interval=timedelta(seconds=config.alerts.repeat_interval),
        )
        self._next = 0.0
        self._pending = 0

    # watcher.ports.AlertSink: how every component raises alerts.

    def evaluate(self, source: str, active: Sequence[Alert]) -> list[Notification]:
        """Set the active alerts of ``source``; returns the notifications it decided."""
        return self.dispatcher.process(source, active, self.clock.now())

    def events(self, alerts: Sequence[tuple[Alert, int]]) -> int:
        """One-off notifications (no lifecycle): e.g. a rollback done, a new version.

        Each ``sequence`` (a history event or journal id) makes it unique in the outbox, so
        the same labels can notify again later while a retried enqueue stays idempotent.
        """
        notes = [Notification(a, NotificationKind.FIRING, sequence=seq) for a, seq in alerts]
        return self.dispatcher.enqueue(notes, self.clock.now())

    def event(self, alert: Alert, sequence: int) -> int:
        return self.events([(alert, sequence)])

    def start(self) -> None:
        self.tick()

    def tick(self) -> float | None:
        now = self.clock.monotonic()
        if now < self._next:
            return self._next - now
        self._next = now + DELIVER_EVERY
        report = self.dispatcher.deliver_due(self.clock.now())
        self._pending = report.pending
        if report.failed:
            for channel in report.errors:
                METRICS.notifier_failures.labels(channel=channel).inc()
            log.warning("alert_delivery_failed", channels=sorted(report.errors))
        return DELIVER_EVERY

    def health(self) -> Health:
        failing = sorted(self.dispatcher.failing_channels)
        return Health(
            "alerts",
            ok=not failing,
            detail={"notifier_failing": failing, "pending_deliveries": self._pending},
        )

    def stop(self) -> None:
        self.dispatcher.close()
