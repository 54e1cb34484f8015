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
import operator
import os
import re
import stat as _stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DEFAULT_IGNORE: tuple[str, ...] = ("*.tmp", "*.part", "*.swp", "*~")
CHUNK = 1 << 18  # bytes per read: the copy stays in L2 until the digest reads it
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
        return "".join([f"{e.sha256}  {e.path}\n" for e in self.entries]).encode(
            "utf-8", "surrogateescape"
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
    for rel, st in walk(
        root, patterns, follow_symlinks=follow_symlinks, on_skip=on_skip, stat_all=True
    ):
        if st is not None:  # always, with stat_all
            yield rel, st


def walk(
    root: Path | str,
    patterns: Sequence[str] = DEFAULT_IGNORE,
    *,
    follow_symlinks: bool = False,
    on_skip: Callable[[str, str], None] | None = None,
    stat_all: bool = False,
) -> Iterator[tuple[str, os.stat_result | None]]:
    """:func:`iter_files` without a stat per plain file (None): the directory entry's
    type says it is a regular file, and a stat costs more than reading a small file's
    bytes. Symlinks (followed) and directories (loop check) are still stat'ed, and
    every file with ``stat_all`` (the daemon's cache keys)."""
    seen_dirs: set[tuple[int, int]] = set()
    root_st = Path(root).stat()
    seen_dirs.add((root_st.st_dev, root_st.st_ino))
    ignored = _ignore_regex(tuple(patterns)).match
    stack: list[tuple[str, str]] = [(os.fspath(root), "")]
    while stack:
        abs_dir, rel_dir = stack.pop()
        with os.scandir(abs_dir) as it:
            entries = list(it)
        for entry in entries:
            name = entry.name
            # Components above were checked when their directory was entered.
            if name[0] == "." or ignored(name) is not None:
                continue
            rel = f"{rel_dir}{name}"
            if entry.is_file(follow_symlinks=False):
                check_name(rel)
                st = _stat_through(entry, rel, on_skip) if stat_all else None
                if st is not None or not stat_all:  # None: vanished since the listing
                    yield rel, st
                continue
            st = _resolve(entry, rel, follow_symlinks, on_skip)
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


def _resolve(
    entry: os.DirEntry[str],
    rel: str,
    follow_symlinks: bool,
    on_skip: Callable[[str, str], None] | None,
) -> os.stat_result | None:
    """A symlink or directory's stat through links; None (reported) when skipped."""
    if entry.is_symlink() and not follow_symlinks:
        if on_skip is not None:
            on_skip(rel, "symlink (follow_symlinks is off)")
        return None
    return _stat_through(entry, rel, on_skip)


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
Item = tuple[str, os.stat_result | None]  # (relative path, stat from the walk if any)
# (relative path, digest or None when the file vanished or changed while read, bytes read)
Digested = tuple[str, str | None, int]


class Checks(Protocol):
    """The daemon's hooks into :func:`hash_many`; the pipeline and the CLI pass none."""

    def stop(self) -> None:
        """Raise to abandon the run (checked between files and chunks)."""

    def still(self, path: str, before: os.stat_result | None) -> bool:
        """False when the file changed while it was read (its digest is then dropped)."""

    def tick(self, done_bytes: int) -> None:
        """At least every ``TICK`` seconds while the run waits on the pool: progress, watchdog."""


class _Run:
    """One :func:`hash_many` call. This thread opens every file and reads its first chunk:
    a file that fits in it (the many-small-files case) is finished here, with no thread
    hand-off (for small files the GIL hand-offs between threads cost more than they
    overlap: ``small-pool`` in benchmarks/hashing.py) and no stat; a larger one goes,
    open, with its digest so far, to the pool, where hashlib digests it without the GIL."""

    def __init__(self, root: str, workers: int, checks: Checks | None) -> None:
        self.root = root
        self.workers = workers
        self.checks = checks
        self.stop = checks.stop if checks is not None else None
        self.done = [0]  # bytes read: a progress hint, updated under the GIL
        self.pool: cf.ThreadPoolExecutor | None = None
        self.handed: dict[cf.Future[Digested], int] = {}  # task → the fd it owns
        self.next_tick = 0.0
        self.results: list[Digested] = []  # from the pool, as its tasks finish

    def run(self, items: Iterable[Item]) -> list[Digested]:
        out: list[Digested] = []
        buf = bytearray(CHUNK)
        try:
            for rel, st in items:
                if self.stop is not None:
                    self.stop()
                done = self._first_chunk(rel, st, buf)
                if done is not None:
                    out.append(done)
                if self.checks is not None and time.monotonic() >= self.next_tick:
                    self._tick()
            while self.handed:
                self._wait(0)
            return out + self.results
        finally:
            self._shutdown()

    def _first_chunk(self, rel: str, st: os.stat_result | None, buf: bytearray) -> Digested | None:
        path = f"{self.root}/{rel}"
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            if self.checks is None:
                raise
            return rel, None, 0  # vanished since the walk: the daemon scans again
        try:
            digest = hashlib.sha256()
            n = os.readv(fd, (buf,))
            digest.update(memoryview(buf)[:n])
            if n == CHUNK and self.workers > 1:
                self._hand_off(fd, rel, st, path, digest, n)
                fd = -1  # the task closes it
                return None
            size = n + _digest_rest(fd, digest, buf, self.stop, self.done) if n else 0
        except OSError as exc:
            raise _named(exc, path) from None
        finally:
            if fd >= 0:
                os.close(fd)
        self.done[0] += n
        return _verified(rel, digest.hexdigest(), size, path, st, self.checks)

    def _hand_off(
        self, fd: int, rel: str, st: os.stat_result | None, path: str, digest: Any, n: int
    ) -> None:
        self._wait(2 * self.workers - 1)  # bounds the open fds
        if self.pool is None:
            self.pool = cf.ThreadPoolExecutor(self.workers, thread_name_prefix="hash")
        task = self.pool.submit(_finish, fd, rel, st, path, digest, n, self.checks, self.done)
        self.handed[task] = fd

    def _wait(self, down_to: int) -> None:
        """Wait until at most ``down_to`` hand-offs are pending, checking the daemon's hooks."""
        while len(self.handed) > down_to:
            finished, _ = cf.wait(list(self.handed), timeout=TICK, return_when=cf.FIRST_COMPLETED)
            for task in finished:
                del self.handed[task]
                self.results.append(task.result())
            self._tick()

    def _tick(self) -> None:
        if self.checks is None:
            return
        self.checks.stop()
        self.checks.tick(self.done[0])
        self.next_tick = time.monotonic() + TICK

    def _shutdown(self) -> None:
        if self.pool is None:
            return
        # Queued tasks never start (their fds are closed here); running ones end at
        # their next chunk's stop check.
        self.pool.shutdown(wait=True, cancel_futures=True)
        for task, fd in self.handed.items():
            if task.cancelled():
                os.close(fd)


def _digest_rest(
    fd: int,
    digest: Any,
    buf: bytearray,
    stop: Callable[[], None] | None,
    done: list[int],
) -> int:
    """Feed the rest of ``fd`` into ``digest``; the bytes read."""
    view = memoryview(buf)
    size = 0
    while n := os.readv(fd, (buf,)):
        digest.update(view[:n])
        size += n
        done[0] += n
        if stop is not None:
            stop()
    return size


def _finish(
    fd: int,
    rel: str,
    st: os.stat_result | None,
    path: str,
    digest: Any,
    n: int,
    checks: Checks | None,
    done: list[int],
) -> Digested:
    """Pool side of a large file: the rest of its bytes, then the daemon's re-stat."""
    try:
        stop = checks.stop if checks is not None else None
        size = n + _digest_rest(fd, digest, bytearray(CHUNK), stop, done)
    except OSError as exc:
        raise _named(exc, path) from None
    finally:
        os.close(fd)
    return _verified(rel, digest.hexdigest(), size, path, st, checks)


def _named(exc: OSError, path: str) -> OSError:
    """A read error (EIO has no file name) as the same OSError subclass, naming the file."""
    return exc if exc.filename else OSError(exc.errno, exc.strerror, path)


def _verified(
    rel: str, sha: str, size: int, path: str, st: os.stat_result | None, checks: Checks | None
) -> Digested:
    if checks is None:
        return rel, sha, size
    try:
        return (rel, sha, size) if checks.still(path, st) else (rel, None, size)
    except (FileNotFoundError, NotADirectoryError):
        return rel, None, size


def hash_many(
    root: Path | str,
    items: Iterable[Item],
    *,
    workers: int | None = None,
    checks: Checks | None = None,
) -> list[Digested]:
    """Digest ``items`` under ``root`` in any order: small files on this thread, large
    ones on a pool of ``workers`` threads (default: one per core). Raises OSError
    (naming the file) for an unreadable one; with ``checks`` (the daemon), a file that
    vanished or changed while read comes back with digest None."""
    workers = max(1, workers or os.cpu_count() or 2)
    return _Run(os.fspath(root), workers, checks).run(items)


def build_manifest(entries: Iterable[FileEntry]) -> Manifest:
    """Sorted by path bytes. check_name admits only names that are valid UTF-8, whose
    byte order is their code point order: ``str`` comparison, no encoding per entry."""
    return Manifest(tuple(sorted(entries, key=_path_of)))


_path_of = operator.attrgetter("path")


def compute_manifest(
    root: Path | str,
    patterns: Sequence[str] = DEFAULT_IGNORE,
    *,
    follow_symlinks: bool = False,
) -> Manifest:
    """Hash every file, no cache. The daemon's incremental hasher gives identical output."""
    items = walk(root, patterns, follow_symlinks=follow_symlinks)
    return build_manifest(
        FileEntry(rel, sha, size) for rel, sha, size in hash_many(root, items) if sha is not None
    )


def dataset_hash(root: Path | str, patterns: Sequence[str] = DEFAULT_IGNORE) -> str:
    return compute_manifest(root, patterns).dataset_hash
