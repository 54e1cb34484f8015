"""The incremental hasher against the one definition (lineage) and against coreutils."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from pipeline.lineage import (
    CHUNK,
    DatasetPathError,
    FileEntry,
    build_manifest,
    compute_manifest,
    hash_many,
    iter_files,
    walk,
)
from watcher.data.hashing import RACY_NS, IncrementalHasher, record_snapshot
from watcher.runtime.state import StateStore

README = Path(__file__).resolve().parents[2] / "README.md"
OLD = time.time_ns() - 60 * 10**9  # an mtime well outside the racy window


def _tree(root: Path) -> None:
    """Nested dirs, spaces, unicode, an empty file, and files the rules ignore."""
    (root / "sub dir" / "deeper").mkdir(parents=True)
    (root / "ünïcødé").mkdir()
    files = {
        "iris.csv": b"a,b\n1,2\n",
        "sub dir/with space.csv": b"x\n" * 1000,
        "sub dir/deeper/z.txt": b"zz",
        "ünïcødé/日本.csv": "ü".encode() * 10,
        "empty.csv": b"",
        "B.csv": b"upper sorts before lower in C locale",
        "a-b.csv": b"-",
        # ignored: dot components, *.tmp, *.part, *.swp, *~
        ".hidden": b"h",
        ".git/config": b"g",
        "sub dir/.cache/x": b"c",
        "save.tmp": b"t",
        "dl.part": b"p",
        ".x.swp": b"s",
        "notes~": b"n",
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    for path in root.rglob("*"):
        os.utime(path, ns=(OLD, OLD))


def _readme_one_liner() -> str:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```sh\n(cd DATA_DIR && find .*?)```", text, re.S)
    assert block is not None, "README lost the coreutils one-liner"
    return block.group(1).replace("\\\n", " ").strip()


def test_manifest_identical_to_lineage(tmp_path: Path, state: StateStore) -> None:
    """Cold and warm incremental manifests are byte-identical to compute_manifest."""
    data = tmp_path / "data"
    _tree(data)
    hasher = IncrementalHasher(data, state)
    cold = hasher.scan()
    warm = hasher.scan()
    expected = compute_manifest(data)
    assert expected.text() == cold.manifest.text() == warm.manifest.text()
    assert 7 == len(expected.entries)
    assert (7, 0) == (cold.hashed_files, cold.cached_files)
    assert (0, 7) == (warm.hashed_files, warm.cached_files)


def test_coreutils_one_liner_from_readme(tmp_path: Path, state: StateStore) -> None:
    """The README's find | sort | sha256sum pipeline, run by bash, gives the same hash."""
    data = tmp_path / "data"
    _tree(data)
    script = _readme_one_liner().replace("cd DATA_DIR", f"cd '{data}'")
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    assert IncrementalHasher(data, state).scan().manifest.dataset_hash == out.stdout.strip()


@pytest.mark.parametrize("name", ["line\nbreak.csv", "back\\slash.csv"])
def test_names_sha256sum_would_escape_are_rejected(tmp_path: Path, name: str) -> None:
    """A newline or backslash in a name is an error that names the file."""
    data = tmp_path / "data"
    (data / "ok").mkdir(parents=True)
    (data / "ok" / name).write_text("x")
    with pytest.raises(DatasetPathError) as err:
        IncrementalHasher(data).scan()
    assert repr(f"ok/{name}") in str(err.value)


def test_only_changed_files_are_reread(tmp_path: Path, state: StateStore) -> None:
    """A fresh hasher (a restarted daemon) trusts the persisted cache; one edit → one read."""
    data = tmp_path / "data"
    _tree(data)
    IncrementalHasher(data, state).scan()
    target = data / "sub dir" / "with space.csv"
    target.write_bytes(b"changed")
    os.utime(target, ns=(OLD + 10**9, OLD + 10**9))
    second = IncrementalHasher(data, state).scan()
    assert (1, 6) == (second.hashed_files, second.cached_files)
    assert compute_manifest(data).text() == second.manifest.text()


def test_racy_clean_file_is_reread_next_time(tmp_path: Path, state: StateStore) -> None:
    """A file modified within 2 s of the scan start is not trusted from the cache later,
    even when a same-timestamp rewrite keeps (size, mtime) identical."""
    data = tmp_path / "data"
    data.mkdir()
    f = data / "a.csv"
    f.write_bytes(b"AAAA")
    st = f.stat()
    now = st.st_mtime_ns + RACY_NS // 2
    first = IncrementalHasher(data, state, wall_ns=lambda: now).scan()
    f.write_bytes(b"BBBB")  # same size; force the same mtime, as a coarse clock would
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = IncrementalHasher(data, state, wall_ns=lambda: now + 1).scan()
    assert 1 == second.hashed_files
    assert first.manifest.dataset_hash != second.manifest.dataset_hash
    assert compute_manifest(data).text() == second.manifest.text()


def test_cache_rows_follow_the_tree(tmp_path: Path, state: StateStore) -> None:
    """Deleted files leave the persisted cache; other roots' rows are untouched."""
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        _tree(root)
        IncrementalHasher(root, state).scan()
    (a / "iris.csv").unlink()
    IncrementalHasher(a, state).scan()
    paths = [r[0] for r in state.conn.execute("SELECT path FROM file_cache")]
    assert 13 == len(paths)
    assert str(a.resolve() / "iris.csv") not in paths
    assert str(b.resolve() / "iris.csv") in paths


def test_large_files_on_the_pool_and_snapshot(tmp_path: Path, state: StateStore) -> None:
    """Multi-MiB files hashed in parallel match lineage; the snapshot is recorded once."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        (data / f"big{i}.bin").write_bytes(os.urandom(3 << 20))
    result = IncrementalHasher(data, state, workers=4).scan()
    assert compute_manifest(data).text() == result.manifest.text()
    from datetime import UTC, datetime

    assert record_snapshot(state, result.manifest, datetime.now(UTC))
    assert not record_snapshot(state, result.manifest, datetime.now(UTC))
    row = state.conn.execute("SELECT file_count, bytes FROM snapshots").fetchone()
    assert (4, 4 * (3 << 20)) == tuple(row)


def test_pool_hashing_and_snapshot_copies_beat_the_keepalive(
    tmp_path: Path, state: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long work on the main loop says it is alive (the systemd watchdog): the hash pool's
    wait loop and the snapshot copy call keepalive.beat()."""
    from watcher.data.snapshots import SnapshotStore
    from watcher.runtime import keepalive

    beats: list[str] = []
    monkeypatch.setattr(keepalive, "_beat", lambda: beats.append("beat"))
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        (data / f"big{i}.bin").write_bytes(os.urandom(3 << 20))
    result = IncrementalHasher(data, state, workers=2).scan()
    hashed = len(beats)
    assert hashed >= 1
    SnapshotStore(tmp_path / "snaps", keep=1).freeze(data, result.manifest)
    assert len(beats) - hashed >= 6, "one per MiB copied"


def test_symlinks_skipped_by_default(tmp_path: Path) -> None:
    """A symlink is skipped (and reported) unless follow_symlinks; a loop is detected."""
    data = tmp_path / "data"
    (data / "d").mkdir(parents=True)
    (data / "d" / "f.csv").write_text("1")
    (data / "link.csv").symlink_to(data / "d" / "f.csv")
    (data / "d" / "loop").symlink_to(data)
    plain = IncrementalHasher(data).scan()
    assert ["d/f.csv"] == [e.path for e in plain.manifest.entries]
    assert {"link.csv", "d/loop"} == {p for p, _ in plain.skipped}
    followed = IncrementalHasher(data, follow_symlinks=True).scan()
    assert ["d/f.csv", "link.csv"] == [e.path for e in followed.manifest.entries]
    assert ("d/loop", "symlink loop") in followed.skipped


def _reference_hash(root: Path, follow_symlinks: bool = False) -> str:
    """The definition, spelled out slowly: every regular file's bytes, sorted by path bytes."""
    lines = []
    for rel, _st in iter_files(root, follow_symlinks=follow_symlinks):
        digest = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        lines.append((rel.encode(), f"{digest}  {rel}\n".encode()))
    return hashlib.sha256(b"".join(line for _, line in sorted(lines))).hexdigest()


def _odd_tree(root: Path) -> None:
    """Odd names, empty files, and sizes around the read chunk (the pool hand-off)."""
    _tree(root)
    (root / "-leading dash").write_bytes(b"-")
    (root / "colon:star*?[x]").write_bytes(b"")
    (root / ("long" * 60)).write_bytes(b"L")
    (root / "Z").mkdir()
    (root / "Z" / "empty").write_bytes(b"")
    for size in (CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK):
        (root / f"sized-{size}.bin").write_bytes(os.urandom(size))


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_every_entry_point_gives_the_reference_hash(
    tmp_path: Path, state: StateStore, workers: int
) -> None:
    """compute_manifest (CLI, pipeline) and the daemon, one thread or a pool, give the
    hash of the plain definition on odd names, empty files and chunk-boundary sizes."""
    data = tmp_path / "data"
    _odd_tree(data)
    want = _reference_hash(data)
    assert want == compute_manifest(data).dataset_hash
    items = list(walk(data))
    got = build_manifest(
        FileEntry(rel, sha, size)
        for rel, sha, size in hash_many(data, items, workers=workers)
        if sha is not None
    )
    assert want == got.dataset_hash
    assert want == IncrementalHasher(data, state, workers=workers).scan().manifest.dataset_hash
    assert [e.size for e in got.entries] == [(data / e.path).stat().st_size for e in got.entries]


@pytest.mark.parametrize("follow", [False, True])
def test_symlinks_alike_in_every_entry_point(tmp_path: Path, follow: bool) -> None:
    """The stat-free walk of compute_manifest skips or follows links as the daemon does."""
    data = tmp_path / "data"
    (data / "d").mkdir(parents=True)
    (data / "d" / "f.csv").write_text("1")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.csv").write_text("2")
    (data / "link.csv").symlink_to(data / "d" / "f.csv")
    (data / "dirlink").symlink_to(outside)
    (data / "dangling").symlink_to(tmp_path / "nowhere")
    (data / "d" / "loop").symlink_to(data)
    manifest = compute_manifest(data, follow_symlinks=follow)
    daemon = IncrementalHasher(data, follow_symlinks=follow).scan().manifest
    assert manifest.text() == daemon.text()
    assert _reference_hash(data, follow) == manifest.dataset_hash
    want = ["d/f.csv", "dirlink/o.csv", "link.csv"] if follow else ["d/f.csv"]
    assert want == [e.path for e in manifest.entries]


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    """A read error names the file, with or without a pool task in flight. The file is a
    followed link to /proc/self/mem, which opens but fails to read (EIO) even for root."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "big.bin").write_bytes(os.urandom(3 * CHUNK))  # a pool task meanwhile
    (data / "mem").symlink_to("/proc/self/mem")
    for workers in (1, 2):
        with pytest.raises(OSError, match="Input/output error") as err:
            hash_many(data, list(walk(data, follow_symlinks=True)), workers=workers)
        assert err.value.filename == f"{data}/mem"


class _StopAfter:
    """Checks that raise on the n-th stop check (a daemon told to stop mid-hash). The test
    below makes at least 36: one per file and one per chunk after the first."""

    def __init__(self, n: int) -> None:
        self.left = n

    def stop(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt

    def still(self, path: str, before: os.stat_result | None) -> bool:
        return True

    def tick(self, done_bytes: int) -> None:
        pass


@pytest.mark.parametrize("stop_after", [None, 0, 5, 20])
def test_many_large_files_leave_no_fd_open(tmp_path: Path, stop_after: int | None) -> None:
    """More large files than hand-offs in flight: same hash; finished, failed or stopped at
    any point (queued tasks cancelled), every file descriptor is closed again."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(12):
        (data / f"f{i:02}.bin").write_bytes(os.urandom(2 * CHUNK + i))
    fds = set(Path("/proc/self/fd").iterdir())
    items = list(walk(data))
    if stop_after is None:
        digests = hash_many(data, items, workers=2)
        got = build_manifest(FileEntry(rel, sha, n) for rel, sha, n in digests if sha is not None)
        assert _reference_hash(data) == got.dataset_hash
    else:
        with pytest.raises(KeyboardInterrupt):
            hash_many(data, items, workers=2, checks=_StopAfter(stop_after))
    assert fds == set(Path("/proc/self/fd").iterdir())
