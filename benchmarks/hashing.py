"""Dataset hashing figures, each against an anchor measured in the same run.

    uv run python benchmarks/hashing.py [--gib 1.0] [--files 20000] [--runs 7] [--json out.json]

- ``cli-1gib``: ``watcher hash`` (a whole process, start-up included) over 1 GiB in
  8 files vs two ``openssl dgst -sha256`` processes in parallel over the same files
  (the two-core limit). Target: ratio (ours / openssl) ≤ 1.3.
- ``cli-small``: ``watcher hash`` over 20,000 x 4 KiB files vs the README's coreutils
  one-liner (``find | sort | xargs sha256sum | sha256sum``). Target: ratio
  (ours / coreutils) ≤ 0.5, i.e. ≥ 2x faster. The ``find -printf`` stat walk is the floor.
- ``small-pool``: the same small files hashed in-process on this thread (what
  ``lineage.hash_many`` does) vs a 2-thread pool over batches of 256: why small
  files stay on one thread.
- ``warm-rehash``: a 20,000-file tree whose cache is in the state DB, one file
  changed, re-hashed by the daemon's long-lived hasher vs a bare ``os.scandir`` +
  ``stat`` walk. Target: ≤ 2x.

``hash-*`` cases: the same work in-process (no start-up); ``cli-startup``: ``watcher hash``
of an empty dir. Medians of ``--runs`` alternating runs, page cache warm. Every ratio is
figure / anchor (``benchmarks/report.py``); ``--json PATH`` writes the rows.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.report import Report, add_json_arg
from pipeline.lineage import compute_manifest, hash_file, hash_many, walk
from watcher.data.hashing import IncrementalHasher
from watcher.runtime.state import open_state

OLD_NS = time.time_ns() - 3600 * 10**9
WATCHER = str(Path(sys.executable).parent / "watcher")
ONE_LINER = (
    "find . -type f ! -path '*/.*' ! -name '*.tmp' ! -name '*.part' ! -name '*.swp' "
    "! -name '*~' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum "
    "| sed 's|  \\./|  |' | sha256sum | cut -d' ' -f1"
)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def alternate(
    runs: int, ours: Callable[[], object], anchor: Callable[[], object]
) -> tuple[float, float]:
    """Medians of alternating runs (the load on a shared box hits both alike)."""
    mine, theirs = [], []
    for _ in range(runs):
        theirs.append(timed(anchor))
        mine.append(timed(ours))
    return statistics.median(mine), statistics.median(theirs)


def sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "LC_ALL": "C"}
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, env=env).stdout.decode()


def one_liner(root: Path) -> str:
    return sh(["bash", "-o", "pipefail", "-c", ONE_LINER], root).strip()


def watcher_hash(root: Path, cwd: Path) -> str:
    return sh([WATCHER, "hash", str(root)], cwd).strip()


def case(
    report: Report, name: str, figure: float, anchor: str, anchor_s: float, at_most: float | None
) -> None:
    """A row in seconds; with ``at_most``, the target is ratio (figure / anchor) ≤ it."""
    met = None if at_most is None else figure / anchor_s <= at_most
    target = "info" if at_most is None else f"ratio <= {at_most:g}"
    report.add(name, figure, "s", anchor_name=anchor, anchor=anchor_s, target=target, met=met)


def big_files(base: Path, gib: float) -> Path:
    root = base / "big"
    root.mkdir()
    block = os.urandom(16 << 20)
    per_file = int(gib * (1 << 30)) // 8
    for i in range(8):
        with (root / f"part{i}.bin").open("wb") as fh:
            written = 0
            while written < per_file:
                written += fh.write(block[: per_file - written])
    return root


def small_files(base: Path, n_files: int, size: int = 4096) -> Path:
    root = base / "small"
    per_dir = 500
    for d in range(max(1, n_files // per_dir)):
        sub = root / f"dir{d:03}"
        sub.mkdir(parents=True)
        for i in range(per_dir):
            p = sub / f"row{i:05}.csv"
            p.write_bytes(os.urandom(size))
            os.utime(p, ns=(OLD_NS, OLD_NS))
    return root


def cli_1gib(report: Report, base: Path, gib: float, runs: int) -> None:
    root = big_files(base, gib)
    files = sorted(p.name for p in root.iterdir())
    halves = [files[0::2], files[1::2]]

    def openssl_pair() -> None:
        procs = [
            subprocess.Popen(
                ["openssl", "dgst", "-sha256", *h], cwd=root, stdout=subprocess.DEVNULL
            )
            for h in halves
        ]
        for p in procs:
            p.wait()

    openssl_pair()  # warm the page cache
    assert watcher_hash(root, base) == one_liner(root)
    ours, anchor = alternate(runs, lambda: watcher_hash(root, base), openssl_pair)
    inproc, anchor2 = alternate(runs, lambda: compute_manifest(root), openssl_pair)
    pair = "2x openssl dgst in parallel"
    case(report, f"hash-{gib:g}gib-in-process", inproc, pair, anchor2, None)
    case(report, f"cli-{gib:g}gib", ours, pair, anchor, 1.3)


def cli_small(report: Report, root: Path, base: Path, runs: int) -> None:
    assert watcher_hash(root, base) == one_liner(root)
    ours, anchor = alternate(runs, lambda: watcher_hash(root, base), lambda: one_liner(root))
    walk_s = statistics.median(
        timed(lambda: sh(["find", ".", "-type", "f", "-printf", "%s %T@\n"], root))
        for _ in range(runs)
    )
    inproc, anchor2 = alternate(runs, lambda: compute_manifest(root), lambda: one_liner(root))
    empty = base / "empty"
    empty.mkdir(exist_ok=True)
    start, bare = alternate(
        runs, lambda: watcher_hash(empty, base), lambda: sh([sys.executable, "-c", "pass"], base)
    )
    one = "coreutils one-liner"
    case(report, "cli-empty-dir", start, "python -c pass", bare, None)  # start-up alone
    case(report, "hash-small-in-process", inproc, one, anchor2, None)
    case(report, "cli-small", ours, one, anchor, 0.5)  # >= 2x faster
    case(report, "cli-small-vs-walk", ours, "find -printf stat walk", walk_s, None)


def small_pool(report: Report, root: Path, runs: int) -> None:
    items = list(walk(root))

    def on_pool() -> None:
        batches = [items[i : i + 256] for i in range(0, len(items), 256)]
        with cf.ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda b: [hash_file(f"{root}/{rel}") for rel, _ in b], batches))

    ours, anchor = alternate(runs, lambda: hash_many(root, items), on_pool)
    # Why small files stay on one thread: ours (one thread) must not lose to the pool.
    case(report, "small-one-thread", ours, "2-thread pool, batches of 256", anchor, 1.0)


def stat_walk(root: str) -> int:
    count = 0
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    entry.stat(follow_symlinks=False)
                    count += 1
    return count


def warm_rehash(report: Report, root: Path, base: Path, runs: int) -> None:
    state = open_state(base / "state")
    daemon = IncrementalHasher(root, state, progress=False)
    daemon.scan()
    target = next(p for p in (root / "dir000").iterdir())
    counter = iter(range(10**6))

    def change() -> None:
        target.write_bytes(b"changed %d\n" % next(counter))
        stamp = OLD_NS + next(counter) * 10**9
        os.utime(target, ns=(stamp, stamp))

    def rehash(hasher: Callable[[], IncrementalHasher]) -> Callable[[], None]:
        def run() -> None:
            change()
            assert hasher().scan().hashed_files == 1

        return run

    ours, anchor = alternate(runs, rehash(lambda: daemon), lambda: stat_walk(str(root)))
    fresh, anchor2 = alternate(
        runs,
        rehash(lambda: IncrementalHasher(root, state, progress=False)),
        lambda: stat_walk(str(root)),
    )
    state.close()
    case(report, "warm-rehash", ours, "os.scandir stat walk", anchor, 2.0)
    case(report, "warm-restart", fresh, "os.scandir stat walk", anchor2, None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--dir", type=Path, default=None)
    add_json_arg(parser)
    args = parser.parse_args()
    report = Report("hashing", vars(args))
    with tempfile.TemporaryDirectory(prefix="bench-hash-", dir=args.dir) as tmp:
        base = Path(tmp)
        cli_1gib(report, base, args.gib, args.runs)
        small = small_files(base, args.files)
        cli_small(report, small, base, args.runs)
        small_pool(report, small, args.runs)
        warm_rehash(report, small, base, args.runs)
    return report.finish(args.json)


if __name__ == "__main__":
    raise SystemExit(main())
