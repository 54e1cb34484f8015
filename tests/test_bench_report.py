"""benchmarks/report.py: the one row format every benchmark prints and writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.report import Report

KEYS = ["name", "figure", "unit", "anchor_name", "anchor", "ratio", "target", "met"]


def test_rows_table_json_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Ratio is figure / anchor; the table says met/MISSED; the JSON has the machine and
    every row's fields; a missed target makes the exit status 1, info rows never do."""
    report = Report("demo", {"runs": 3, "dir": tmp_path})
    report.add(
        "fast", 0.05, "s", anchor_name="python -c pass", anchor=0.025, target="<= 0.3 s", met=True
    )
    report.add("calls", 3, "calls")
    assert 0 == report.finish(tmp_path / "ok.json")
    report.add("slow", 2.5, "s", target="<= 2 s", met=False)
    assert 1 == report.finish(tmp_path / "missed.json")
    table = capsys.readouterr().out
    assert "50 ms" in table and "25 ms python -c pass" in table and "MISSED" in table
    doc = json.loads((tmp_path / "missed.json").read_text(encoding="utf-8"))
    assert doc["benchmark"] == "demo" and doc["machine"]["cores"] >= 1
    assert doc["args"] == {"runs": 3, "dir": str(tmp_path)}
    assert [list(r) for r in doc["rows"]] == [KEYS] * 3
    assert doc["rows"][0]["ratio"] == 2.0
    assert doc["rows"][1]["anchor"] is None and doc["rows"][1]["met"] is None
