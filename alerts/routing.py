"""Route alerts to channels by label matchers, with Alertmanager's matcher semantics.

A matcher is ``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex``;
regexes are anchored at both ends and a missing label matches as "". The first
route whose matchers all match wins (unless it sets ``continue_``); an alert no
route matches goes to every channel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from alerts.errors import AlertValidationError
from alerts.model import Notification, NotificationKind

Op = Literal["=", "!=", "=~", "!~"]
_MATCHER: Final = re.compile(
    r"""\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|[^"]*?)\s*"""
)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op not in ("=", "!=", "=~", "!~"):
            raise AlertValidationError(f"matcher {self.name!r}: unknown operator {self.op!r}")
        if self.op in ("=~", "!~"):
            try:
                compiled = re.compile(f"^(?:{self.value})$")
            except re.error as exc:
                raise AlertValidationError(
                    f"matcher {self.name}{self.op}{self.value!r}: invalid regex: {exc}"
                ) from exc
            object.__setattr__(self, "_regex", compiled)

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self._regex is not None:
            found = self._regex.match(value) is not None
            return found if self.op == "=~" else not found
        return (value == self.value) if self.op == "=" else (value != self.value)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse ``severity=~"critical|page"`` (quotes optional)."""
        found = _MATCHER.fullmatch(text)
        if found is None:
            raise AlertValidationError(
                f"matcher {text!r}: expected name=value, name!=value, name=~regex or name!~regex"
            )
        name, op, raw = found.groups()
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        return cls(name, op, raw)  # type: ignore[arg-type]  # the regex only admits Op values


@dataclass(frozen=True)
class Route:
    channels: tuple[str, ...]
    matchers: tuple[Matcher, ...] = ()
    continue_: bool = False

    @classmethod
    def of(cls, channels: Iterable[str], *matchers: str, continue_: bool = False) -> Route:
        """``Route.of(["slack"], 'severity="critical"', 'model=~"iris.*"')``."""
        return cls(tuple(channels), tuple(Matcher.parse(m) for m in matchers), continue_)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


class Router:
    """Maps an alert's labels to the channel names that should hear about it."""

    def __init__(self, channels: Sequence[str], routes: Sequence[Route] = ()) -> None:
        if len(set(channels)) != len(channels):
            raise AlertValidationError(f"channel names must be unique, got {list(channels)}")
        for index, route in enumerate(routes):
            if not route.channels:
                raise AlertValidationError(f"routes[{index}]: no channels")
            unknown = [c for c in route.channels if c not in channels]
            if unknown:
                raise AlertValidationError(
                    f"routes[{index}]: unknown channel(s) {unknown}; known: {list(channels)}"
                )
        self.channels = tuple(channels)
        self.routes = tuple(routes)

    def channels_for(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        chosen: list[str] = []
        matched = False
        for route in self.routes:
            if route.matches(labels):
                matched = True
                chosen.extend(c for c in route.channels if c not in chosen)
                if not route.continue_:
                    break
        return tuple(chosen) if matched else self.channels


@dataclass(frozen=True)
class PlannedDelivery:
    channel: str
    notification: Notification


def plan_deliveries(
    notifications: Iterable[Notification],
    router: Router,
    send_resolved: Mapping[str, bool],
) -> list[PlannedDelivery]:
    """Fan notifications out to channels; drop resolved ones where a channel opted out."""
    planned: list[PlannedDelivery] = []
    for note in notifications:
        for channel in router.channels_for(note.alert.labels):
            if note.kind is NotificationKind.RESOLVED and not send_resolved.get(channel, True):
                continue
            planned.append(PlannedDelivery(channel, note))
    return planned
