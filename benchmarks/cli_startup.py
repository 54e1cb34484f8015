"""How fast `watcher --help` answers, against a bare `python -c pass` baseline.

Target: < 0.5 s. Prints the median of N runs for both and their ratio.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 15
WATCHER = Path(sys.executable).parent / "watcher"


def median_seconds(argv: list[str]) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    baseline = median_seconds([sys.executable, "-c", "pass"])
    help_s = median_seconds([str(WATCHER), "--help"])
    hash_s = median_seconds([str(WATCHER), "--version"])
    print(f"python -c pass        {baseline * 1000:7.1f} ms  (baseline)")
    print(f"watcher --help        {help_s * 1000:7.1f} ms  ({help_s / baseline:.1f}x baseline)")
    print(f"watcher --version     {hash_s * 1000:7.1f} ms  ({hash_s / baseline:.1f}x baseline)")
    print(f"target < 500 ms: {'met' if help_s < 0.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
