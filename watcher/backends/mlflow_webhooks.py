"""The watcher's registry webhook in MLflow (ports.RegistryWebhooks), through the
process's registry adapter (its client, call counts and error translation).

Ours is the webhook named ``WEBHOOK_NAME`` that calls our URL: two watchers on one MLflow
(template instances) each own the one calling them, and a team's other webhooks are
never touched. MLflow never returns a webhook's secret, so an install always sets it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from watcher.ports import WEBHOOK_ACTIVE, WEBHOOK_EVENTS, WebhookInfo, WebhookTest
from watcher.runtime.logging import redact_text

if TYPE_CHECKING:
    from watcher.backends.mlflow_registry import MlflowRegistry

WEBHOOK_NAME = "registry-watcher"
TEST_EVENT = "model_version_alias.created"  # monitor.signature.TEST_EVENT: ignored on receipt
_PAGE = 100  # MLflow's maximum for list_webhooks
# MLflow types event names as a Literal of its own; ours are the same strings.
_EVENTS: Any = list(WEBHOOK_EVENTS)
_TEST: Any = TEST_EVENT
_DESCRIPTION = "registry-watcher: registry changes as hints (watcher webhooks install)"


def _info(hook: Any) -> WebhookInfo:
    return WebhookInfo(
        webhook_id=str(hook.webhook_id),
        name=str(hook.name),
        url=str(hook.url),
        events=tuple(str(e) for e in hook.events),
        status=str(hook.status),
    )


class MlflowWebhooks:
    """Implements :class:`watcher.ports.RegistryWebhooks` over an MlflowRegistry."""

    def __init__(self, registry: MlflowRegistry) -> None:
        self.registry = registry

    def _all(self) -> list[WebhookInfo]:
        out: list[WebhookInfo] = []
        token: str | None = None
        while True:
            with self.registry.call("list_webhooks") as c:
                page = c.list_webhooks(max_results=_PAGE, page_token=token)
            out.extend(_info(h) for h in page)
            token = page.token
            if not token:
                return out

    def find(self, url: str) -> WebhookInfo | None:
        """Ours calling ``url`` (1 call per 100 webhooks)."""
        return next((h for h in self._all() if h.name == WEBHOOK_NAME and h.url == url), None)

    def install(self, url: str, secret: str) -> tuple[WebhookInfo, bool]:
        found = self.find(url)
        if found is None:
            with self.registry.call("create_webhook", interruptible=False) as c:
                hook = c.create_webhook(
                    name=WEBHOOK_NAME,
                    url=url,
                    events=_EVENTS,
                    description=_DESCRIPTION,
                    secret=secret,
                    status=WEBHOOK_ACTIVE,
                )
            return _info(hook), True
        with self.registry.call("update_webhook", interruptible=False) as c:
            hook = c.update_webhook(
                found.webhook_id,
                description=_DESCRIPTION,
                events=_EVENTS,
                secret=secret,
                status=WEBHOOK_ACTIVE,
            )
        return _info(hook), False

    def test(self, webhook_id: str) -> WebhookTest:
        """MLflow delivers a signed test payload now and reports what our receiver said."""
        with self.registry.call("test_webhook") as c:
            result = c.test_webhook(webhook_id, event=_TEST)
        err = result.error_message
        return WebhookTest(
            bool(result.success),
            result.response_status,
            redact_text(str(err))[:300] if err else None,
        )

    def remove(self, url: str) -> list[str]:
        removed = []
        for hook in self._all():
            if hook.name == WEBHOOK_NAME and hook.url == url:
                with self.registry.call("delete_webhook", interruptible=False) as c:
                    c.delete_webhook(hook.webhook_id)
                removed.append(hook.webhook_id)
        return removed
