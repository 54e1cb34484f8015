"""The timing-sensitive tests, N rounds in a row, while a CPU hog keeps one core busy.

    uv run python benchmarks/stress.py [--rounds 5] [pytest args, e.g. test paths]

The hog is `stress-ng --cpu 1` (Debian package stress-ng) when installed, else a Python
busy loop in a child process. Each round is a fresh `pytest` process; prints each round's
outcome and time, then the rows (``benchmarks/report.py``, ``--json PATH``: each round's
seconds, and the green rounds against the rounds run) and exits 1 unless every round passed.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

from benchmarks.report import Report, add_json_arg

# Tests whose assertions depend on things happening in time (waits, kills, signals, pings).
DEFAULT_TESTS = [
    "tests/reliability/test_prompt_stop.py",
    "tests/runtime/test_systemd_notify.py",
    "tests/cli/test_cli.py",
    "tests/data/test_datawatch.py",
    "tests/data/test_crash.py",
    "tests/monitor/test_outage.py",
    "tests/reliability/test_soak.py",
    "tests/reliability/test_kill_loop.py",
    "tests/pipeline/test_dag.py::test_dagbag_integrity_defaults_and_overrides",
]
BUSY_LOOP = "while True: pass"


@contextlib.contextmanager
def one_core_busy() -> Iterator[str]:
    stress_ng = shutil.which("stress-ng")
    argv = [stress_ng, "--cpu", "1", "--quiet"] if stress_ng else [sys.executable, "-c", BUSY_LOOP]
    hog = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield "stress-ng --cpu 1" if stress_ng else "a Python busy loop"
    finally:
        hog.terminate()
        try:
            hog.wait(timeout=10)
        except subprocess.TimeoutExpired:
            hog.kill()
            hog.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    add_json_arg(ap)
    args, pytest_args = ap.parse_known_args()
    report = Report("stress", {"rounds": args.rounds, "tests": pytest_args or "default"})
    targets = pytest_args or DEFAULT_TESTS
    results: list[tuple[int, float]] = []
    with one_core_busy() as hog:
        print(f"{args.rounds} rounds with one core busy ({hog}): {' '.join(targets)}", flush=True)
        for n in range(1, args.rounds + 1):
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *targets],
                check=False,
                capture_output=True,
                text=True,
            )
            seconds = time.monotonic() - started
            results.append((done.returncode, seconds))
            summary = done.stdout.strip().splitlines()[-1:] or ["(no output)"]
            print(f"round {n}: {summary[0]} ({seconds:.0f} s)", flush=True)
            if done.returncode != 0:
                print("\n".join(done.stdout.splitlines()[-40:]), flush=True)
    for n, (code, seconds) in enumerate(results, 1):
        report.add(f"round-{n}", seconds, "s", target="green", met=code == 0)
    green = sum(1 for code, _ in results if code == 0)
    report.add(
        "rounds-green",
        green,
        "rounds",
        anchor_name="rounds run",
        anchor=len(results),
        target="all",
        met=green == len(results),
    )
    return report.finish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
