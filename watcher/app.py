"""The one place that builds real adapters and components from the config."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watcher.config import Config
    from watcher.daemon import Component
    from watcher.state import StateStore


def build_components(config: Config, state: StateStore) -> list[Component]:
    """Components in start order; each feature adds itself here."""
    config.watch.data_dir.mkdir(parents=True, exist_ok=True)
    components: list[Component] = []
    return components
