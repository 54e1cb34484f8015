"""Several live-observation sources as one ``ObservationSource`` (MLflow metrics, the
daemon's intake, Prometheus): the monitor's policy sees every observation of a version,
whatever it came through, oldest first.

When one source cannot be read (``ObservationsUnavailable``), the others are still read
(an MLflow failure among them still raises as an MLflow outage) and what they returned
rides on the error (``found``): partial evidence. The policy may start an alert on it (an
intake report of a breach counts while Prometheus is down) but never end one or call a
model ok (a breach seen in Prometheus is not "recovered" by a few good MLflow reports):
such a verdict is replaced by the no-evidence one, inconclusive (firing stays firing),
until every source answers again.
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
        for obs in out.values():
            obs.sort(key=lambda o: o.at)
        if down:
            error = down[0] if len(down) == 1 else SourcesUnavailable(down)
            error.found = out
            raise error
        return out
