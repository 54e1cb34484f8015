"""Frozen copies of each triggered dataset, so a run trains exactly the bytes it was for.

Without snapshots a run reads the live data dir, so a trigger whose data was replaced
before delivery can only fail the pipeline's hash check and is superseded instead. With
``watch.snapshot_dir`` every triggered hash is frozen first:

    <snapshot_dir>/.objects/ab/abcd….444  content-addressed (digest and mode), read-only
    <snapshot_dir>/<dataset hash>/…       the dataset's tree, hard links to the objects

so an unchanged file costs its bytes once across all snapshots (as in DVC's cache).
A tree is built under ``.tmp-*`` and renamed into place, and an object is copied to a
temporary name, verified against the manifest digest and renamed: a crash leaves only
``.tmp-*`` litter, removed at the next start or freeze, never a half snapshot. A file that changed
after it was hashed fails the digest check (:class:`SnapshotStale`): the caller rescans.
Only 64-hex-digit names are snapshots: nothing else in the directory is ever pruned.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.lineage import Manifest
from watcher.errors import WatcherError
from watcher.runtime import keepalive
from watcher.runtime.logging import get_logger

if TYPE_CHECKING:
    from watcher.trigger.outbox import Outbox

log = get_logger(__name__)  # the data watcher's events

OBJECTS = ".objects"
TMP_PREFIX = ".tmp-"
_CHUNK = 1 << 20
_SNAPSHOT_NAME = re.compile(r"[0-9a-f]{64}")


class SnapshotStale(WatcherError):
    """A data file no longer has the bytes the manifest hashed (it is being written)."""

    def __init__(self, message: str, rel: str) -> None:
        super().__init__(message)
        self.rel = rel  # the file's manifest path


class SnapshotStore:
    def __init__(self, root: Path, keep: int) -> None:
        self.root = Path(root).absolute()
        self.keep = keep

    def path_for(self, data_hash: str) -> Path:
        return self.root / data_hash

    def freeze(self, source: Path, manifest: Manifest) -> Path:
        """The snapshot of ``manifest`` (made from ``source`` unless it exists already)."""
        final = self.path_for(manifest.dataset_hash)
        if final.is_dir():
            os.utime(final)  # used again (data went back to it): recent for prune
            return final
        self.root.mkdir(parents=True, exist_ok=True)
        self.remove_litter()
        tmp = self.root / f"{TMP_PREFIX}{manifest.dataset_hash}-{os.getpid()}"
        tmp.mkdir()
        try:
            for entry in manifest.entries:
                obj = self._object(source, entry.path, entry.sha256)
                link = tmp / entry.path
                link.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(obj, link)
                except OSError as exc:
                    if exc.errno != errno.EMLINK:
                        raise
                    # 65,000 links per inode on ext4 (thousands of identical empty
                    # label files): an own copy instead.
                    shutil.copy2(obj, link)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def _object(self, source: Path, rel: str, sha256: str) -> Path:
        src = source / rel
        # Read-only for everyone who could read the source, never wider: the mode is part
        # of the key, so equal bytes with other permissions get their own object.
        try:
            mode = src.stat().st_mode & 0o444
        except FileNotFoundError:
            raise SnapshotStale(f"{src}: removed after it was hashed", rel) from None
        obj = self.root / OBJECTS / sha256[:2] / f"{sha256}.{mode:o}"
        if obj.exists():
            return obj
        obj.parent.mkdir(parents=True, exist_ok=True)
        tmp = obj.parent / f"{TMP_PREFIX}{sha256}-{os.getpid()}"
        digest = hashlib.sha256()
        try:
            with (
                src.open("rb") as fin,
                os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fout,
            ):
                while chunk := fin.read(_CHUNK):
                    digest.update(chunk)
                    fout.write(chunk)
                    keepalive.beat()
                fout.flush()
                os.fsync(fout.fileno())
            if digest.hexdigest() != sha256:
                raise SnapshotStale(f"{src}: changed after it was hashed", rel)
            tmp.chmod(mode)
            tmp.rename(obj)
        except FileNotFoundError as exc:
            tmp.unlink(missing_ok=True)
            if exc.filename == str(src):
                raise SnapshotStale(f"{src}: removed after it was hashed", rel) from None
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return obj

    def remove_litter(self) -> None:
        """Half-built trees and objects a killed process left behind."""
        for path in self.root.glob(f"{TMP_PREFIX}*"):
            shutil.rmtree(path, ignore_errors=True)
        for path in self.root.glob(f"{OBJECTS}/*/{TMP_PREFIX}*"):
            path.unlink(missing_ok=True)

    def snapshots(self) -> list[Path]:
        """Existing snapshots, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if _SNAPSHOT_NAME.fullmatch(p.name) and p.is_dir()]
        return sorted(found, key=lambda p: p.stat().st_mtime_ns)

    def prune(self, needed: Collection[str]) -> list[str]:
        """Delete snapshots beyond the newest ``keep`` that no queued or running run needs;
        then the objects no snapshot links to. Returns the deleted dataset hashes."""
        existing = self.snapshots()
        recent = {p.name for p in existing[-self.keep :]}
        removed = [p for p in existing if p.name not in recent and p.name not in needed]
        for path in removed:
            # Out of sight first: a crash mid-delete leaves .tmp-* litter, never a partial
            # tree that a later freeze of the same hash would reuse.
            trash = self.root / f"{TMP_PREFIX}trash-{path.name}-{os.getpid()}"
            path.rename(trash)
            shutil.rmtree(trash)
        if removed:
            for obj in (self.root / OBJECTS).glob("*/*"):
                with contextlib.suppress(FileNotFoundError):
                    if obj.stat().st_nlink == 1:
                        obj.unlink()
        return [p.name for p in removed]


class SnapshotKeeper:
    """The snapshots of the triggers in the outbox: frozen when queued, pruned once no
    queued or running trigger needs them. A ``ports.RunHooks``: a finished run's may go."""

    def __init__(self, store: SnapshotStore, outbox: Outbox) -> None:
        self.store = store
        self.root = store.root
        self.outbox = outbox

    def remove_litter(self) -> None:
        self.store.remove_litter()

    def frozen(self, data_hash: str) -> Path | None:
        """The snapshot of ``data_hash`` while it exists (a retrain of it trains it)."""
        path = self.store.path_for(data_hash)
        return path if path.is_dir() else None

    def freeze(self, source: Path, manifest: Manifest) -> Path:
        """Freeze ``manifest`` (raises SnapshotStale or OSError), then prune the others."""
        path = self.store.freeze(source, manifest)
        self.prune(queuing=path.name)
        return path

    def prune(self, queuing: str | None = None) -> None:
        """``queuing``: the snapshot just frozen, whose trigger is not in the outbox yet."""
        needed = {
            Path(r.conf["data_dir"]).name
            for r in [*self.outbox.pending(), *self.outbox.following()]
            if "source_dir" in r.conf
        }
        if queuing is not None:
            needed.add(queuing)
        try:
            removed = self.store.prune(needed)
        except OSError as exc:
            log.warning("snapshot_prune_failed", error=str(exc))
            return
        if removed:
            log.info("snapshots_pruned", removed=removed)

    def before_trigger(self, data_dir: Path, data_hash: str) -> dict[str, Any]:
        return {}  # the data watcher freezes before it builds the conf

    def after_run(self, run_id: str, conf: Mapping[str, Any], state: str) -> None:
        self.prune()
