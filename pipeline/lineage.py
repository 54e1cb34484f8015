"""The dataset hash: one definition shared by the pipeline and the daemon.

Manifest = one ``<sha256 hex>  <relative path>\\n`` line per regular file,
exactly ``sha256sum``'s output, sorted by path bytes (C locale); the dataset
hash is the SHA-256 of the manifest bytes. See README "Dataset hash".
"""

from __future__ import annotations

import concurrent.futures as cf
import errno
import fnmatch
import functools
import hashlib
import os
import re
import stat as _stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

DEFAULT_IGNORE: tuple[str, ...] = ("*.tmp", "*.part", "*.swp", "*~")
CHUNK = 1 << 18  # bytes per read: the copy stays in L2 until the digest reads it
LARGE_FILE = 1 << 20  # files at least this big get a pool task of their own
SMALL_BATCH = 256  # small files per work item
TICK = 0.2  # seconds between a pool run's checks (stop, progress, watchdog)
# The watcher → pipeline trigger contract: what the watcher adds to a run conf about
# *why* it triggered. Recorded on the training run (tags; drift as metrics), never
# training parameters.
TRIGGER_KEYS = frozenset({"file_count", "bytes", "reason", "note", "drift", "source_dir"})


class DatasetPathError(ValueError):
    """A file name the manifest format cannot represent (sha256sum would escape it)."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One manifest line: relative ``/``-separated path, digest and size."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Manifest:
    entries: tuple[FileEntry, ...]

    def text(self) -> bytes:
        return b"".join(
            f"{e.sha256}  {e.path}\n".encode("utf-8", "surrogateescape") for e in self.entries
        )

    @property
    def dataset_hash(self) -> str:
        return hashlib.sha256(self.text()).hexdigest()

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)


@functools.lru_cache(maxsize=32)
def _ignore_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """All basename patterns as one compiled regex (one match per entry, not one per pattern)."""
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def is_ignored(rel_path: str, patterns: Sequence[str] = DEFAULT_IGNORE) -> bool:
    """Any component starting with '.' or a basename matching a pattern is ignored."""
    if rel_path.startswith(".") or "/." in rel_path:
        return True
    name = rel_path.rpartition("/")[2]
    return _ignore_regex(tuple(patterns)).match(name) is not None


def printable(rel_path: str) -> str:
    """The name as text any log, message or SQLite column can hold: bytes that are not
    UTF-8 shown as ``\\xe9`` (unambiguous: names with a backslash are refused)."""
    return rel_path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_name(rel_path: str) -> None:
    if "\n" in rel_path or "\\" in rel_path or "\r" in rel_path:
        raise DatasetPathError(
            f"{rel_path!r}: file names with newline or backslash are not supported "
            "(sha256sum would escape them); rename the file"
        )
    if not rel_path.isascii():
        try:
            rel_path.encode("utf-8")
        except UnicodeEncodeError:
            # Refused like a newline: such a name cannot be stored (SQLite), logged or
            # tagged as text, and would hash on the CLI but break the daemon and the run.
            raise DatasetPathError(
                f"'{printable(rel_path)}': file names that are not valid UTF-8 are not "
                "supported; rename the file"
            ) from None


def sort_key(rel_path: str) -> bytes:
    return rel_path.encode("utf-8", "surrogateescape")


def iter_files(
    root: Path,
    patterns: Sequence[str] = DEFAULT_IGNORE,
    *,
    follow_symlinks: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relative path, stat) for every regular file under ``root`` not ignored.

    Symlinks are skipped unless ``follow_symlinks``; directory loops are detected
    by (device, inode) and reported through ``on_skip``.
    """
    seen_dirs: set[tuple[int, int]] = set()
    root_st = root.stat()
    seen_dirs.add((root_st.st_dev, root_st.st_ino))
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        abs_dir, rel_dir = stack.pop()
        with os.scandir(abs_dir) as it:
            entries = list(it)
        for entry in entries:
            rel = f"{rel_dir}{entry.name}"
            if is_ignored(rel, patterns):
                continue
            is_link = entry.is_symlink()
            if is_link and not follow_symlinks:
                if on_skip is not None:
                    on_skip(rel, "symlink (follow_symlinks is off)")
                continue
            st = _stat_through(entry, rel, on_skip)
            if st is None:
                continue
            if _stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen_dirs:
                    if on_skip is not None:
                        on_skip(rel, "symlink loop")
                    continue
                seen_dirs.add(key)
                stack.append((entry.path, rel + "/"))
            elif _stat.S_ISREG(st.st_mode):
                check_name(rel)
                yield rel, st


def _stat_through(
    entry: os.DirEntry[str], rel: str, on_skip: Callable[[str, str], None] | None
) -> os.stat_result | None:
    """The entry's stat through links; None (reported) when it vanished or cannot resolve."""
    try:
        return entry.stat(follow_symlinks=True)
    except FileNotFoundError:
        why = "vanished or dangling symlink"
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        why = "symlink loop"  # `ln -s self self`: the kernel gives up resolving it
    if on_skip is not None:
        on_skip(rel, why)
    return None


def hash_file(path: Path | str, between_chunks: Callable[[], None] | None = None) -> str:
    """SHA-256 of the file's bytes. ``between_chunks`` runs after each chunk: the daemon's
    stop check, which may raise."""
    return _digest_path(os.fspath(path), bytearray(CHUNK), between_chunks)[0]


def _digest_path(
    path: str, buf: bytearray, between_chunks: Callable[[], None] | None = None
) -> tuple[str, int]:
    """(hex digest, bytes read): a raw fd read into the caller's reused buffer, no file
    object; hashlib releases the GIL while digesting, so pool threads hash in parallel."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        digest = hashlib.sha256()
        view = memoryview(buf)
        size = 0
        while n := os.readv(fd, (buf,)):
            digest.update(view[:n])
            size += n
            if between_chunks is not None:
                between_chunks()
        return digest.hexdigest(), size
    finally:
        os.close(fd)


# A FIFO swapped in after the walk must not block the read (regular files ignore it).
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_Item = tuple[str, os.stat_result]
# (path, digest or None when the file vanished or changed while read, bytes read)
Digested = tuple[str, str | None, int]


class Checks(Protocol):
    """The daemon's hooks into a hashing run; the pipeline and the CLI pass none."""

    def stop(self) -> None:
        """Raise to abandon the run (checked between files and chunks)."""

    def still(self, path: str, before: os.stat_result) -> bool:
        """False when the file changed while it was read (its digest is then dropped)."""

    def tick(self, done_bytes: int) -> None:
        """Every ``TICK`` seconds while the pool works: progress, watchdog."""


def _hash_batch(
    root: str, batch: Sequence[_Item], checks: Checks | None, done: list[int]
) -> list[Digested]:
    """Digest each file of one work item with one reused buffer."""
    buf = bytearray(CHUNK)
    stop = checks.stop if checks is not None else None
    out: list[Digested] = []
    for rel, st in batch:
        if stop is not None:
            stop()
        path = f"{root}/{rel}"
        try:
            sha: str | None
            sha, size = _digest_path(path, buf, stop)
            if checks is not None and not checks.still(path, st):
                sha = None
        except (FileNotFoundError, NotADirectoryError):
            if checks is None:
                raise
            sha, size = None, 0
        out.append((rel, sha, size))
        done[0] += st.st_size  # one int, updated under the GIL: a progress hint only
    return out


def batches(items: Sequence[_Item]) -> list[list[_Item]]:
    """One work item per large file; small files grouped SMALL_BATCH at a time, so a
    work item costs one future, not one per file."""
    out: list[list[_Item]] = []
    small: list[_Item] = []
    for item in items:
        if item[1].st_size >= LARGE_FILE:
            out.append([item])
        else:
            small.append(item)
            if len(small) >= SMALL_BATCH:
                out.append(small)
                small = []
    if small:
        out.append(small)
    return out


def hash_many(
    root: Path | str,
    items: Sequence[_Item],
    *,
    workers: int | None = None,
    checks: Checks | None = None,
    always_pool: bool = False,
) -> list[Digested]:
    """Digest ``items`` (relative path, stat from the walk): large files on a thread
    pool, one per task; small files in batches on the calling thread, because below
    ~1 MiB the GIL hand-offs between threads cost more than they overlap (measured,
    benchmarks/hashing.py). ``always_pool`` keeps this thread free to run
    ``checks.tick`` (the daemon's progress and watchdog) even for one batch."""
    base = os.fspath(root)
    work = batches(items)
    big = [b for b in work if b[0][1].st_size >= LARGE_FILE]
    small = [b for b in work if b[0][1].st_size < LARGE_FILE]
    workers = workers or os.cpu_count() or 2
    done = [0]
    if not always_pool and (workers == 1 or len(big) + min(1, len(small)) < 2):
        return [d for b in work for d in _hash_batch(base, b, checks, done)]
    queued = work if always_pool else big
    with cf.ThreadPoolExecutor(min(workers, len(queued)), thread_name_prefix="hash") as pool:
        futures = [pool.submit(_hash_batch, base, b, checks, done) for b in queued]
        try:
            out = (
                []
                if always_pool
                else [d for b in small for d in _hash_batch(base, b, checks, done)]
            )
            pending: set[cf.Future[list[Digested]]] = set(futures)
            while pending:
                _, pending = cf.wait(pending, timeout=TICK)
                if checks is not None:
                    checks.stop()
                    checks.tick(done[0])
        except BaseException:
            # Queued items never start; running ones end at their next chunk's check.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        return out + [d for f in futures for d in f.result()]


def build_manifest(entries: Iterable[FileEntry]) -> Manifest:
    return Manifest(tuple(sorted(entries, key=lambda e: sort_key(e.path))))


def compute_manifest(
    root: Path | str,
    patterns: Sequence[str] = DEFAULT_IGNORE,
    *,
    follow_symlinks: bool = False,
) -> Manifest:
    """Hash every file, no cache. The daemon's incremental hasher gives identical output."""
    items = list(iter_files(Path(root), patterns, follow_symlinks=follow_symlinks))
    return build_manifest(
        FileEntry(rel, sha, size) for rel, sha, size in hash_many(root, items) if sha is not None
    )


def dataset_hash(root: Path | str, patterns: Sequence[str] = DEFAULT_IGNORE) -> str:
    return compute_manifest(root, patterns).dataset_hash
