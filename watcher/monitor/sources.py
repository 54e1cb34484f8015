"""Several live-observation sources as one ``ObservationSource`` (MLflow metrics, the
daemon's intake, Prometheus): the monitor's policy sees every observation of a version,
whatever it came through, oldest first.

All or nothing: when one source cannot be read (``ObservationsUnavailable``), the others
are still read (an MLflow failure among them still raises as an MLflow outage), then the
poll's observations are given up as a whole (:class:`SourcesUnavailable`). A window of the
other sources alone could start or end an alert on part of the evidence (a breach seen
in Prometheus "recovered" by a few good MLflow reports): without all of it the policy
gets none, and says inconclusive (firing stays firing) until the source is back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from watcher.errors import ObservationsUnavailable

if TYPE_CHECKING:
    from watcher.monitor.policy import Observation
    from watcher.ports import ObservationSource


class SourcesUnavailable(ObservationsUnavailable):
    """Several sources could not be read; ``down`` has each one's error."""

    def __init__(self, down: Sequence[ObservationsUnavailable]) -> None:
        super().__init__(", ".join(e.source for e in down), "; ".join(map(str, down)))
        self.down = tuple(down)


def unavailable(exc: ObservationsUnavailable) -> dict[str, str]:
    """Source name -> why it could not be read (without the name repeated)."""
    errors = exc.down if isinstance(exc, SourcesUnavailable) else (exc,)
    return {e.source: str(e).removeprefix(f"{e.source}: ") for e in errors}


class Combined:
    """Implements :class:`watcher.ports.ObservationSource` over ``sources``."""

    def __init__(self, sources: Sequence[ObservationSource]) -> None:
        self.sources = tuple(sources)

    def observations(
        self, wanted: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], list[Observation]]:
        keys = list(wanted)
        out: dict[tuple[str, str], list[Observation]] = {k: [] for k in keys}
        down: list[ObservationsUnavailable] = []
        for source in self.sources:
            try:
                found = source.observations(keys)
            except ObservationsUnavailable as exc:
                down.append(exc)
                continue
            for key, obs in found.items():
                out.setdefault(key, []).extend(obs)
        if len(down) == 1:
            raise down[0]
        if down:
            raise SourcesUnavailable(down)
        for obs in out.values():
            obs.sort(key=lambda o: o.at)
        return out
