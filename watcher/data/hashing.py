"""Incremental dataset hashing: the manifest of ``pipeline.lineage``, re-reading only changed files.

Per-file digests are cached in the state store (``file_cache``), keyed by the
absolute path and trusted only while (device, inode, size, mtime_ns) match.
git's "racy clean" rule applies: a file whose mtime is within ``RACY_NS`` of the
scan start may still change within the same timestamp tick, so it is never
trusted from the cache next time. Files are read on a thread pool (hashlib
releases the GIL while digesting), small ones in batches to keep the overhead
of futures low. The manifest is built by ``lineage.build_manifest`` from the same
``FileEntry`` values, so it is byte-identical to ``lineage.compute_manifest``.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from pipeline.lineage import DEFAULT_IGNORE, FileEntry, Manifest, build_manifest, hash_many
from pipeline.lineage import iter_files as lineage_iter_files
from watcher.runtime import keepalive, stopping
from watcher.runtime.logging import get_logger
from watcher.runtime.state import StateStore, iso

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

log = get_logger("watcher.data.hashing")

RACY_NS = 2_000_000_000  # git's rule, widened to 2 s for coarse-timestamp filesystems
STALLED_AFTER = 600.0  # no file finished for this long: stop feeding the watchdog
PROGRESS_MIN_BYTES = 256 << 20  # show progress when at least this much must be read
PROGRESS_LOG_EVERY = 5.0  # seconds between progress log lines when not on a TTY


class StatKey(NamedTuple):
    dev: int
    ino: int
    size: int
    mtime_ns: int


@dataclass(slots=True)
class _Cached:
    key: StatKey
    entry: FileEntry  # reused as is on a hit: no allocation per unchanged file
    racy: bool  # hashed too close to a change: re-read next time, never persisted


@dataclass(frozen=True, slots=True)
class ScanResult:
    """One scan: the manifest, what had to be read, and whether every file held still."""

    manifest: Manifest
    hashed_files: int
    hashed_bytes: int
    cached_files: int
    seconds: float
    unsettled: tuple[str, ...]  # changed while being read (or vanished): scan again later
    skipped: tuple[tuple[str, str], ...]  # (path, reason): symlinks, loops

    @property
    def settled(self) -> bool:
        return not self.unsettled


def _key(st: os.stat_result) -> StatKey:
    return StatKey(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class _Progress:
    """A rich bar on a TTY, else a log line every few seconds; fed from the main thread."""

    def __init__(self, total_bytes: int, total_files: int, root: Path) -> None:
        self.total = total_bytes
        self.files = total_files
        self.root = root
        self.started = time.monotonic()
        self._last_log = self.started
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            bar = Progress(
                "hashing",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            bar.start()
            self._task = bar.add_task("hash", total=total_bytes)
            self._bar = bar
        else:
            log.info("hashing_started", data_dir=str(root), files=total_files, bytes=total_bytes)

    def update(self, done_bytes: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done_bytes)
            return
        now = time.monotonic()
        if now - self._last_log >= PROGRESS_LOG_EVERY:
            self._last_log = now
            elapsed = now - self.started
            log.info(
                "hashing_progress",
                data_dir=str(self.root),
                done_bytes=done_bytes,
                total_bytes=self.total,
                percent=round(100.0 * done_bytes / max(1, self.total), 1),
                mb_per_s=round(done_bytes / max(elapsed, 1e-9) / 1e6, 1),
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


class _Liveness:
    """Feeds the watchdog while the hash pool makes progress; a read hung on a dead NFS
    mount (no file finished for STALLED_AFTER) is not fed forever."""

    def __init__(self) -> None:
        self.seen = -1
        self.moved_at = time.monotonic()

    def update(self, done_bytes: int) -> None:
        now = time.monotonic()
        if done_bytes != self.seen:
            self.seen, self.moved_at = done_bytes, now
        if now - self.moved_at < STALLED_AFTER:
            keepalive.beat()


class IncrementalHasher:
    """Hashes one data dir; keeps the cache in memory between scans and writes deltas through."""

    def __init__(
        self,
        root: Path | str,
        state: StateStore | None = None,
        *,
        patterns: Sequence[str] = DEFAULT_IGNORE,
        follow_symlinks: bool = False,
        workers: int = 4,
        progress: bool = True,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.root = Path(root)
        self.state = state
        self.patterns = tuple(patterns)
        self.follow_symlinks = follow_symlinks
        self.workers = max(1, workers)
        self.progress = progress
        self._wall_ns = wall_ns
        self._cache: dict[str, _Cached] | None = None
        self._prefix = ""
        # The daemon's stop event: a scan checks it between files and chunks and raises
        # stopping.Stopping (the first hash of a big tree must not outlast a SIGTERM).
        self.stop: threading.Event | None = None

    # Cache persistence -------------------------------------------------------

    def _load(self) -> dict[str, _Cached]:
        """Rows under this root only; keys in memory are paths relative to the root."""
        prefix = str(self.root.resolve()) + "/"
        if self._cache is not None and prefix == self._prefix:
            return self._cache
        self._prefix = prefix
        cache: dict[str, _Cached] = {}
        if self.state is not None:
            # '/' + 1 == '0': the half-open range is exactly the paths under the prefix.
            rows = self.state.conn.execute(
                "SELECT path, dev, ino, size, mtime_ns, sha256 FROM file_cache "
                "WHERE path >= ? AND path < ?",
                (prefix, prefix[:-1] + "0"),
            )
            cut = len(prefix)
            for path, dev, ino, size, mtime_ns, sha in rows:
                rel = path[cut:]
                cache[rel] = _Cached(
                    StatKey(dev, ino, size, mtime_ns), FileEntry(rel, sha, size), racy=False
                )
        self._cache = cache
        return cache

    def forget(self, rel: str) -> None:
        """Re-read ``rel`` next scan: its bytes changed although its stat did not (a writer
        that restored the mtime), which only a later full read can show."""
        self._load().pop(rel, None)
        self._persist([], [rel])

    def _persist(self, upserts: list[tuple[str, StatKey, str]], deletes: list[str]) -> None:
        if self.state is None or not (upserts or deletes):
            return
        p = self._prefix
        with self.state.transaction() as tx:
            if deletes:
                tx.executemany("DELETE FROM file_cache WHERE path = ?", [(p + r,) for r in deletes])
            if upserts:
                tx.executemany(
                    "INSERT INTO file_cache (path, dev, ino, size, mtime_ns, sha256) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET dev = excluded.dev, "
                    "ino = excluded.ino, size = excluded.size, mtime_ns = excluded.mtime_ns, "
                    "sha256 = excluded.sha256",
                    [(p + r, *k, sha) for r, k, sha in upserts],
                )

    # Scanning ----------------------------------------------------------------

    def scan(self) -> ScanResult:
        """Walk, re-hash what changed, return the manifest. Raises DatasetPathError, OSError."""
        started = time.monotonic()
        scan_start_ns = self._wall_ns()
        cache = self._load()
        walked, skipped = self._walk()
        entries: dict[str, FileEntry] = {}
        todo: list[tuple[str, os.stat_result]] = []
        get = cache.get
        for rel, st in walked:
            hit = get(rel)
            if hit is not None and not hit.racy:
                k = hit.key
                if (
                    k.mtime_ns == st.st_mtime_ns
                    and k.size == st.st_size
                    and k.ino == st.st_ino
                    and k.dev == st.st_dev
                ):
                    entries[rel] = hit.entry
                    continue
            todo.append((rel, st))

        digests, unsettled = self._hash_all(todo)
        upserts: list[tuple[str, StatKey, str]] = []
        deletes: list[str] = []
        racy_before = scan_start_ns - RACY_NS
        for rel, st in todo:
            sha = digests.get(rel)
            if sha is None:
                cache.pop(rel, None)
                deletes.append(rel)
                continue
            entry = entries[rel] = FileEntry(rel, sha, st.st_size)
            key = _key(st)
            racy = st.st_mtime_ns >= racy_before
            cache[rel] = _Cached(key, entry, racy)
            if racy:
                deletes.append(rel)  # an older trusted row must not survive either
            else:
                upserts.append((rel, key, sha))
        if len(cache) != len(entries):  # entries ⊆ cache: any extra key is a deleted file
            for gone in [rel for rel in cache if rel not in entries]:
                del cache[gone]
                deletes.append(gone)
        self._persist(upserts, deletes)
        return ScanResult(
            manifest=build_manifest(entries.values()),
            hashed_files=len(digests),
            hashed_bytes=sum(st.st_size for rel, st in todo if rel in digests),
            cached_files=len(walked) - len(todo),
            seconds=time.monotonic() - started,
            unsettled=tuple(sorted(unsettled)),
            skipped=tuple(skipped),
        )

    def _walk(self) -> tuple[list[tuple[str, os.stat_result]], list[tuple[str, str]]]:
        """The files (path, stat) and the skipped paths (path, why); stops on request."""
        skipped: list[tuple[str, str]] = []
        walked: list[tuple[str, os.stat_result]] = []
        for item in lineage_iter_files(
            self.root,
            self.patterns,
            follow_symlinks=self.follow_symlinks,
            on_skip=lambda rel, why: skipped.append((rel, why)),
        ):
            walked.append(item)
            self._check_stop()
        return walked, skipped

    def _hash_all(self, todo: list[tuple[str, os.stat_result]]) -> tuple[dict[str, str], list[str]]:
        """Digest each file, then re-stat it: a file that changed meanwhile is unsettled."""
        if not todo:
            return {}, []
        total = sum(st.st_size for _, st in todo)
        progress = (
            _Progress(total, len(todo), self.root)
            if self.progress and total >= PROGRESS_MIN_BYTES
            else None
        )
        try:
            # Large files go to the pool while this thread reports progress and keeps
            # the systemd watchdog fed (Checks.tick).
            results = hash_many(
                self.root,
                todo,
                workers=self.workers,
                checks=_DaemonChecks(self, progress),
            )
        finally:
            if progress is not None:
                progress.close()
        digests: dict[str, str] = {}
        unsettled: list[str] = []
        for rel, sha, _size in results:
            if sha is None:
                unsettled.append(rel)
            else:
                digests[rel] = sha
        return digests, unsettled

    def _check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise stopping.Stopping


class _DaemonChecks:
    """The daemon's side of ``lineage.hash_many``: its stop event, the re-stat that
    marks a file unsettled, progress and the watchdog."""

    def __init__(self, hasher: IncrementalHasher, progress: _Progress | None) -> None:
        self.stop = hasher._check_stop
        self.follow = hasher.follow_symlinks
        self.progress = progress
        self.alive = _Liveness()

    def still(self, path: str, before: os.stat_result | None) -> bool:
        # os.stat on the str: no Path object per file in this hot loop.
        after = os.stat(path, follow_symlinks=self.follow)  # noqa: PTH116
        return before is not None and _key(after) == _key(before)

    def tick(self, done_bytes: int) -> None:
        self.alive.update(done_bytes)
        if self.progress is not None:
            self.progress.update(done_bytes)


def record_snapshot(state: StateStore, manifest: Manifest, now: datetime) -> bool:
    """Upsert the dataset snapshot; True when this hash was never seen before."""
    at = iso(now)
    with state.transaction() as tx:
        try:
            tx.execute(
                "INSERT INTO snapshots (data_hash, first_seen, last_seen, file_count, bytes) "
                "VALUES (?, ?, ?, ?, ?)",
                (manifest.dataset_hash, at, at, len(manifest.entries), manifest.total_bytes),
            )
        except sqlite3.IntegrityError:
            tx.execute(
                "UPDATE snapshots SET last_seen = ? WHERE data_hash = ?",
                (at, manifest.dataset_hash),
            )
            return False
    return True
