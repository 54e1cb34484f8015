"""Several live-observation sources as one ``ObservationSource`` (MLflow metrics, the
daemon's intake, Prometheus): the monitor's policy sees every observation of a version,
whatever it came through, oldest first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from watcher.monitor.policy import Observation
    from watcher.ports import ObservationSource


class Combined:
    """Implements :class:`watcher.ports.ObservationSource` over ``sources``."""

    def __init__(self, sources: Sequence[ObservationSource]) -> None:
        self.sources = tuple(sources)

    def observations(
        self, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Observation]]:
        keys = list(wanted)
        out: dict[tuple[str, str], list[Observation]] = {k: [] for k in keys}
        for source in self.sources:
            for key, found in source.observations(keys).items():
                out.setdefault(key, []).extend(found)
        for found in out.values():
            found.sort(key=lambda o: o.at)
        return out
