"""Human durations ("90s", "5m", "4h", "1d", or plain seconds) as float seconds."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_SECONDS = 100 * 365 * 86400.0
_RE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> float:
    """Parse a duration; raises ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, '30s', '5m', '4h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _RE.match(value)
        if m is None:
            raise ValueError(f"{value!r} is not a duration (use e.g. 30, '30s', '5m', '4h', '1d')")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError("expected a duration such as 30, '30s', '5m', '4h'")
    if not math.isfinite(seconds):
        # TOML has nan and inf; nan slips past every comparison and inf overflows timedelta.
        raise ValueError("must be a finite number of seconds")
    if seconds < 0:
        raise ValueError("must not be negative")
    if seconds > MAX_SECONDS:
        raise ValueError("must be at most 100 years")  # beyond it, timedelta overflows
    return seconds


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


MIN_INTERVAL = 0.01  # seconds: a nanosecond interval is as hot a loop as 0


def _positive(seconds: float) -> float:
    if seconds < MIN_INTERVAL:
        raise ValueError("must be greater than 0 (at least 10ms)")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
# Intervals, timeouts and retry delays: 0 would make a hot loop (a poll, a resend or a
# retry on every pass) or fail every request at once.
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
