"""The dataset hash: one definition shared by the pipeline and the daemon.

Manifest = one ``<sha256 hex>  <relative path>\\n`` line per regular file,
exactly ``sha256sum``'s output, sorted by path bytes (C locale); the dataset
hash is the SHA-256 of the manifest bytes. See README "Dataset hash".
"""

from __future__ import annotations

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

DEFAULT_IGNORE: tuple[str, ...] = ("*.tmp", "*.part", "*.swp", "*~")
CHUNK = 1 << 20
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
    """SHA-256 of the file's bytes, read CHUNK at a time (hashlib.file_digest's loop).
    ``between_chunks`` runs after each chunk: the daemon's stop check, which may raise."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with Path(path).open("rb", buffering=0) as fh:
        while size := fh.readinto(buf):
            digest.update(view[:size])  # releases the GIL: pool threads hash in parallel
            if between_chunks is not None:
                between_chunks()
    return digest.hexdigest()


def build_manifest(entries: Iterable[FileEntry]) -> Manifest:
    return Manifest(tuple(sorted(entries, key=lambda e: sort_key(e.path))))


def compute_manifest(
    root: Path | str,
    patterns: Sequence[str] = DEFAULT_IGNORE,
    *,
    follow_symlinks: bool = False,
) -> Manifest:
    """Hash every file, no cache. The daemon's incremental hasher gives identical output."""
    root = Path(root)
    return build_manifest(
        FileEntry(rel, hash_file(root / rel), st.st_size)
        for rel, st in iter_files(root, patterns, follow_symlinks=follow_symlinks)
    )


def dataset_hash(root: Path | str, patterns: Sequence[str] = DEFAULT_IGNORE) -> str:
    return compute_manifest(root, patterns).dataset_hash
