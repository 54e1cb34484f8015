"""One small error hierarchy; the CLI maps it to exit codes (2 bad input, 1 backend)."""

from __future__ import annotations

from typing import Any


class WatcherError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ConfigError(WatcherError):
    """Bad configuration or bad command-line input."""

    exit_code = 2

    def __init__(self, errors: list[str] | str) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        super().__init__("; ".join(self.errors))


class UsageError(WatcherError):
    """Bad input from the user (unknown model, bad value)."""

    exit_code = 2


class StateError(WatcherError):
    """The state store is unusable (corrupt, newer schema, unwritable)."""


class BackendError(WatcherError):
    """A backend (MLflow, Airflow, a notifier) failed."""


class RegistryError(BackendError):
    pass


class RegistryUnavailable(RegistryError):
    """The registry could not be reached at all (connection refused, timeout, 5xx)."""


class ObservationsUnavailable(BackendError):
    """A live-observation source (Prometheus, …) cannot be read: an outage, never a breach."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        # What the other sources of a Combined read returned (monitor/sources.py): partial
        # evidence, which may start an alert but never end one.
        self.found: dict[Any, Any] = {}


class TriggerError(BackendError):
    pass


class NotifyError(BackendError):
    pass


class RollbackRefused(WatcherError):
    """A rollback the guards refuse; bad input when asked by hand."""

    exit_code = 2


class LockHeld(WatcherError):
    """Another instance holds the state-dir lock."""
