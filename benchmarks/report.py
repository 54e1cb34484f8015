"""One format for every benchmark: rows of figure, anchor, ratio and target, as a table and JSON.

A row is one figure a goal is judged on, next to the anchor measured in the same run
(the physical limit or the reference tool) and their ratio (figure / anchor). ``met``
is None for rows that only inform (no target). ``Report.finish`` prints the table,
writes ``--json PATH`` and returns the exit code (1 when a target was missed), so
`benchmarks/run_all.py` can collect every benchmark's JSON into one directory:

    {"benchmark": "hashing", "machine": {...}, "args": {...},
     "rows": [{"name", "figure", "unit", "anchor_name", "anchor", "ratio", "target", "met"}]}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    figure: float
    unit: str
    anchor_name: str | None = None
    anchor: float | None = None
    ratio: float | None = None
    target: str = "info"
    met: bool | None = None


def fmt(value: float | None, unit: str) -> str:
    """A figure for the table: seconds below 1 in ms, counts without decimals."""
    if value is None:
        return "-"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"
    if float(value).is_integer() and abs(value) >= 1:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")


@dataclass
class Report:
    """The rows of one benchmark run, with the machine and load they ran under."""

    benchmark: str
    args: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    load_before: float = field(default_factory=lambda: os.getloadavg()[0])

    def __post_init__(self) -> None:
        print(
            f"{self.benchmark}: {os.cpu_count()} cores, load {self.load_before:.1f}, "
            f"{platform.platform()}",
            flush=True,
        )

    def add(
        self,
        name: str,
        figure: float,
        unit: str,
        *,
        anchor_name: str | None = None,
        anchor: float | None = None,
        target: str = "info",
        met: bool | None = None,
    ) -> Row:
        """Add a row; the ratio is figure / anchor when there is an anchor."""
        ratio = figure / anchor if anchor else None
        row = Row(
            name,
            _round(figure),
            unit,
            anchor_name,
            None if anchor is None else _round(anchor),
            None if ratio is None else round(ratio, 3),
            target,
            met,
        )
        self.rows.append(row)
        return row

    def table(self) -> str:
        head = ("name", "figure", "anchor", "ratio", "target", "")
        lines = [head]
        for r in self.rows:
            anchor = f"{fmt(r.anchor, r.unit)} {r.anchor_name}" if r.anchor_name else "-"
            verdict = "" if r.met is None else ("met" if r.met else "MISSED")
            ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
            lines.append((r.name, fmt(r.figure, r.unit), anchor, ratio, r.target, verdict))
        widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines
        )

    def document(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "machine": {
                "cores": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "load_before": round(self.load_before, 2),
                "load_after": round(os.getloadavg()[0], 2),
            },
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in self.args.items()},
            "rows": [asdict(r) for r in self.rows],
        }

    def finish(self, json_path: Path | None) -> int:
        """Print the table, write the JSON; 1 when any target was missed."""
        print(self.table())
        doc = self.document()
        print(f"load {doc['machine']['load_before']} → {doc['machine']['load_after']}")
        if json_path is not None:
            json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        return 1 if any(r.met is False for r in self.rows) else 0


def _round(value: float) -> float:
    return round(value, 4) if abs(value) < 1000 else round(value, 1)
