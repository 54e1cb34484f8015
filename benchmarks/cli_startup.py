"""How fast the commands that do not talk to MLflow answer, whole processes.

Per command: the median wall time, the anchors measured in the same run (`python -c
pass` and `watcher --help`, interleaved with the commands so load changes hit all
alike) and the ratios. Target (#17): every light command <= 0.25 s.

    python benchmarks/cli_startup.py [--runs N] [--json PATH]

The commands run as an installed package runs them: bytecode cached (the children get
no PYTHONDONTWRITEBYTECODE, so the warm-up round writes the project's ``.pyc`` files;
an editable checkout with that variable set recompiles ~40 modules per command).
``status (terminal)`` draws its tables with rich on a pseudo-terminal; piped, status
prints plain text.
"""

from __future__ import annotations

import argparse
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import Report, add_json_arg

WATCHER = str(Path(sys.executable).parent / "watcher")
TARGET_S = 0.25
ANCHORS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "watcher --help": [WATCHER, "--help"],
}
COMMANDS = {
    "watcher --version": [WATCHER, "--version"],
    "watcher service-unit": [WATCHER, "service-unit"],
    "watcher check-config": [WATCHER, "check-config"],
    "watcher status --json": [WATCHER, "status", "--json"],
    "watcher status": [WATCHER, "status"],
    "watcher status (terminal)": [WATCHER, "status"],
    "watcher history": [WATCHER, "history"],
    "watcher history --json": [WATCHER, "history", "--json"],
    "watcher hash tiny": [WATCHER, "hash", "tiny"],
}
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _workdir(root: Path) -> Path:
    """A config, an empty data dir and a one-file dir to hash."""
    (root / "data").mkdir()
    (root / "tiny").mkdir()
    (root / "tiny" / "a.csv").write_text("x,y\n1,2\n")
    (root / "watcher.toml").write_text(
        f'[watch]\ndata_dir = "{root / "data"}"\n[state]\ndir = "{root / "state"}"\n'
    )
    return root


def _once(name: str, argv: list[str], cwd: Path) -> float:
    if name.endswith("(terminal)"):
        primary, secondary = pty.openpty()
        try:
            start = time.perf_counter()
            subprocess.run(argv, cwd=cwd, env=ENV, check=True, stdout=secondary)
            return time.perf_counter() - start
        finally:
            os.close(primary)
            os.close(secondary)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(runs: int, cwd: Path) -> dict[str, float]:
    """Median seconds per command; every round runs each command once, in turn."""
    cases = {**ANCHORS, **COMMANDS}
    for name, argv in cases.items():  # warm the page cache, the bytecode, the state dir
        _once(name, argv, cwd)
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, argv in cases.items():
            samples[name].append(_once(name, argv, cwd))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    add_json_arg(parser)
    args = parser.parse_args()
    report = Report("cli_startup", vars(args))
    with tempfile.TemporaryDirectory() as tmp:
        medians = measure(args.runs, _workdir(Path(tmp)))
    base, help_s = medians["python -c pass"], medians["watcher --help"]
    report.add("python -c pass", base, "s")
    for name in COMMANDS:
        report.add(
            name,
            medians[name],
            "s",
            anchor_name="watcher --help",
            anchor=help_s,
            target=f"<= {TARGET_S} s",
            met=medians[name] <= TARGET_S,
        )
    sys.exit(report.finish(args.json))


if __name__ == "__main__":
    main()
