"""Load: a 100,000-file data dir (first hash, then incremental) and a 50,000-event burst.

Rows (``benchmarks/report.py``, ``--json PATH``), each against an anchor measured in the
same run:

1. first hash of FILES small files (every file read) with the progress log, against
   the README's coreutils one-liner over the same files;
2. incremental re-hash after one file changed, against a bare ``os.scandir`` stat walk;
3. a burst of EVENTS new files written by another process into the watched dir while
   the data watcher runs (inotify): time until the single resulting trigger, against
   the writer's own time;
4. this process's RSS after each phase, against its RSS before them.

The 100-watched-models figure comes from `benchmarks/poll.py` (it needs a real
`mlflow server`). A scaled-down variant of phases 1-2 with a memory bound runs in the
tests (tests/reliability/test_load.py).

    uv run python benchmarks/load.py [--files 100000] [--events 50000] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.hashing import one_liner, stat_walk
from benchmarks.report import Report, add_json_arg

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
        t = time.perf_counter()
        stat_walk(str(data))
        out["stat_walk_s"] = time.perf_counter() - t
        t = time.perf_counter()
        one_liner(data)
        out["one_liner_s"] = time.perf_counter() - t
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
            if "writer_s" not in out and writer.poll() is not None:
                out["writer_s"] = time.perf_counter() - t
            time.sleep(min(max(min(dw.tick(), delivery.tick()), 0.01), 0.1))
            if time.perf_counter() - t > 600:
                raise RuntimeError("no trigger within 10 minutes")
        out["burst_to_trigger_s"] = time.perf_counter() - t
        out.setdefault("writer_s", out["burst_to_trigger_s"])
        out["burst_triggers"] = len(runs.read_text().split())
        out["burst_files_hashed"] = dw.status.last_files
        out["rss_after_burst_mib"], out["peak_after_burst_mib"] = rss_mib()
    finally:
        delivery.stop()
        dw.stop()
        state.close()
    return out


def rows(report: Report, f: dict[str, float], files: int) -> None:
    report.add(
        f"first-hash-{files}-files",
        f["first_s"],
        "s",
        anchor_name="coreutils one-liner",
        anchor=f["one_liner_s"],
    )
    report.add(
        "incremental-one-changed",
        f["incremental_s"],
        "s",
        anchor_name="os.scandir stat walk",
        anchor=f["stat_walk_s"],
        target="1 file re-read",
        met=f["incremental_hashed"] == 1,
    )
    report.add(
        "burst-to-trigger",
        f["burst_to_trigger_s"],
        "s",
        anchor_name="the writer's own time",
        anchor=f["writer_s"],
        target="1 trigger",
        met=f["burst_triggers"] == 1,
    )
    base = f["rss_baseline_mib"]
    for key in ("rss_after_first", "peak_after_first", "rss_after_burst", "peak_after_burst"):
        name = key.replace("_", "-")
        report.add(name, f[f"{key}_mib"], "MiB", anchor_name="RSS before", anchor=base)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=50_000)
    add_json_arg(parser)
    args = parser.parse_args()
    report = Report("load", vars(args))
    with tempfile.TemporaryDirectory(prefix="watcher-load-") as tmp:
        root = Path(tmp)
        base, _ = rss_mib()
        figures = {"rss_baseline_mib": base}
        figures |= hash_phases(root, args.files)
        figures |= burst_phase(root, args.events)
    print(f"load: {args.files} files, burst of {args.events} new files")
    rows(report, figures, args.files)
    return report.finish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
