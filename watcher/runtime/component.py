"""What the daemon drives: a component (start, tick, health, stop) and its health."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from alerts.redaction import redact_data


@dataclass(frozen=True, slots=True)
class Health:
    """One component's health, for /healthz and `watcher status`.

    ``ok`` is liveness: only it gates systemd's watchdog (a restart can fix a dead
    thread). ``ready`` is readiness: a backend we need is unreachable (MLflow
    down) or the data is unusable; /healthz reports it, but restarting us would not
    bring MLflow back or fix the data.
    """

    name: str
    ok: bool
    detail: dict[str, object] = field(default_factory=dict)
    ready: bool = True

    def __post_init__(self) -> None:
        # Served by /healthz and saved in the heartbeat: an error may echo a secret.
        object.__setattr__(self, "detail", redact_data(self.detail))


class Component(Protocol):
    name: str

    def start(self) -> None: ...

    def tick(self) -> float | None:
        """Do due work; return seconds until the next call is needed (None: no opinion)."""
        ...

    def health(self) -> Health: ...

    def stop(self) -> None: ...
