"""Load: a 100,000-file data dir (first hash, then incremental) and a 50,000-event burst.

Prints wall time, files/s and the process RSS (current and peak) for each phase:

1. first hash of FILES small files (cold cache: every file read) with the progress log;
2. incremental re-hash after one file changed (stat walk + one read);
3. a burst of EVENTS new files written by another process into the watched dir while
   the data watcher runs (inotify): time until the single resulting trigger, RSS.

The 100-watched-models figure comes from `benchmarks/poll.py` (it needs a real
`mlflow server`). A scaled-down variant of phases 1-2 with a memory bound runs in the
tests (tests/reliability/test_load.py).

    uv run python benchmarks/load.py [--files 100000] [--events 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Writes N files named b<i>.csv into a dir, from another process (like a real producer).
WRITE_FILES = (
    "import sys, pathlib\n"
    "d, n, p = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]\n"
    "for i in range(n):\n"
    "    (d / f'{p}{i:06}.csv').write_text(f'a,target\\n{i},{i % 2}\\n')\n"
)
RECORD_RUN = (
    "import json, sys\n"
    "conf = json.load(sys.stdin)\n"
    "open(sys.argv[1], 'a').write(conf['data_hash'] + '\\n')\n"
)


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    current = pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return current, peak


def write_files(directory: Path, n: int, prefix: str) -> None:
    subprocess.run([sys.executable, "-c", WRITE_FILES, str(directory), str(n), prefix], check=True)


def hash_phases(root: Path, files: int) -> dict[str, float]:
    from watcher.data.hashing import IncrementalHasher
    from watcher.runtime.state import open_state

    data = root / "data"
    data.mkdir()
    write_files(data, files, "f")
    time.sleep(2.1)  # older than the racy-clean window, as data that has sat a while
    state = open_state(root / "state")
    out: dict[str, float] = {}
    try:
        hasher = IncrementalHasher(data, state, patterns=(), progress=True)
        t = time.perf_counter()
        first = hasher.scan()
        out["first_s"] = time.perf_counter() - t
        out["first_files"] = first.hashed_files
        out["rss_after_first_mib"], out["peak_after_first_mib"] = rss_mib()
        (data / "f000007.csv").write_text("a,target\n7,0\n8,1\n")
        time.sleep(2.1)  # outside the racy-clean window, like a real later scan
        t = time.perf_counter()
        again = IncrementalHasher(data, state, patterns=(), progress=False).scan()
        out["incremental_s"] = time.perf_counter() - t
        out["incremental_hashed"] = again.hashed_files
        out["rss_after_incremental_mib"], _ = rss_mib()
    finally:
        state.close()
    return out


def burst_phase(root: Path, events: int) -> dict[str, float]:
    from watcher.app import build_data_side
    from watcher.config import load_config
    from watcher.runtime.state import open_state

    data = root / "burst"
    data.mkdir()
    runs = root / "burst-runs.txt"
    cfg = load_config(
        None,
        env={},
        overrides={
            "watch.data_dir": str(data),
            "state.dir": str(root / "burst-state"),
            "watch.quiet_period": "1",
            "trigger.backend": "command",
            "trigger.command": [sys.executable, "-c", RECORD_RUN, str(runs)],
        },
    )
    state = open_state(cfg.state.dir)
    dw, delivery = build_data_side(cfg, state, progress=False)
    out: dict[str, float] = {}
    try:
        dw.start()
        delivery.start()
        dw.tick()
        delivery.tick()
        t = time.perf_counter()
        writer = subprocess.Popen([sys.executable, "-c", WRITE_FILES, str(data), str(events), "b"])
        while writer.poll() is None or not runs.exists():
            time.sleep(min(max(min(dw.tick(), delivery.tick()), 0.01), 0.1))
            if time.perf_counter() - t > 600:
                raise RuntimeError("no trigger within 10 minutes")
        out["burst_to_trigger_s"] = time.perf_counter() - t
        out["burst_triggers"] = len(runs.read_text().split())
        out["burst_files_hashed"] = dw.status.last_files
        out["rss_after_burst_mib"], out["peak_after_burst_mib"] = rss_mib()
    finally:
        delivery.stop()
        dw.stop()
        state.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="watcher-load-") as tmp:
        root = Path(tmp)
        base, _ = rss_mib()
        figures = {"rss_baseline_mib": base}
        figures |= hash_phases(root, args.files)
        figures |= burst_phase(root, args.events)
    f = figures
    print(f"load: {args.files} files, burst of {args.events} new files")
    print(
        f"  first hash      {f['first_s']:.1f} s ({args.files / f['first_s']:,.0f} files/s), "
        f"RSS {f['rss_after_first_mib']:.0f} MiB (peak {f['peak_after_first_mib']:.0f})"
    )
    print(
        f"  incremental     {f['incremental_s']:.2f} s, {f['incremental_hashed']:.0f} file(s) "
        f"re-read, RSS {f['rss_after_incremental_mib']:.0f} MiB"
    )
    print(
        f"  burst → trigger {f['burst_to_trigger_s']:.1f} s, {f['burst_triggers']:.0f} "
        f"trigger(s) for {f['burst_files_hashed']:.0f} files, "
        f"RSS {f['rss_after_burst_mib']:.0f} MiB (peak {f['peak_after_burst_mib']:.0f})"
    )
    print(f"  baseline RSS {f['rss_baseline_mib']:.0f} MiB; 100 watched models: benchmarks/poll.py")
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
