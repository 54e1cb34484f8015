"""Filesystem events as hints: watchdog → a bounded "something changed" record → debounced batches.

The handler runs on watchdog's thread and only updates counters under a lock
(an exception there would kill the observer). The main loop asks
:meth:`FsWatch.batch_due` whether a change batch is ready: after
``quiet_period`` without events, or ``max_wait`` after the first event of a
continuous stream. Events carry no paths downstream: the incremental hash is
the truth, so a 10,000-file burst costs three integers, not 10,000 records.

:meth:`FsWatch.check` rebuilds the watch when the observer or its emitter
died, or the data dir was deleted or replaced (a new inode), since inotify
keeps watching the old inode and watchdog does not say so.

A data dir that is (or sits under) a symlink, ``data → releases/42`` as deploy tools
make, is watched at its resolved target: inotify under the link path reports nothing.
The link is re-resolved on every check, so a dir swapped for a link, or a retargeted
link, rebuilds the watch on the new target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from pipeline.lineage import is_ignored
from watcher.errors import ConfigError
from watcher.runtime.logging import get_logger

log = get_logger("watcher.data.fswatch")

Mode = Literal["auto", "events", "polling"]
INOTIFY_LIMITS = {errno.ENOSPC: "max_user_watches", errno.EMFILE: "max_user_instances"}
SAMPLE_PATHS = 5


@dataclass(frozen=True, slots=True)
class Batch:
    """What the handler saw since the last take: counts and a few example paths."""

    events: int
    first_at: float
    last_at: float
    sample: tuple[str, ...]


class _Recorder(FileSystemEventHandler):
    """Counts relevant events; O(1) memory however many arrive."""

    def __init__(self, root: Path, patterns: Sequence[str], clock: Callable[[], float]) -> None:
        self.root = str(root)  # the watched (resolved) dir: event paths start with it
        self._patterns = tuple(patterns)
        self._clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._first = 0.0
        self._last = 0.0
        self._sample: deque[str] = deque(maxlen=SAMPLE_PATHS)

    def _relevant(self, path: str) -> bool:
        root = self.root
        if not path.startswith(root):
            return False
        rel = path[len(root) :].lstrip("/")
        return rel == "" or not is_ignored(rel, self._patterns)

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if event.event_type in ("opened", "closed_no_write"):
                return  # reads do not change content
            paths = [os.fsdecode(event.src_path)]
            if event.dest_path:
                paths.append(os.fsdecode(event.dest_path))
            hits = [p for p in paths if self._relevant(p)]
            if not hits:
                return  # e.g. the temp file of an atomic save; its rename is relevant
            self.note(hits[-1])
        except Exception:  # noqa: S110  never let an exception kill the observer thread
            pass

    def note(self, path: str = "") -> None:
        now = self._clock()
        with self._lock:
            if self._count == 0:
                self._first = now
            self._count += 1
            self._last = now
            if path:
                self._sample.append(path)

    def peek(self) -> Batch | None:
        with self._lock:
            if self._count == 0:
                return None
            return Batch(self._count, self._first, self._last, tuple(self._sample))

    def take(self) -> Batch | None:
        with self._lock:
            if self._count == 0:
                return None
            batch = Batch(self._count, self._first, self._last, tuple(self._sample))
            self._count = 0
            self._sample.clear()
            return batch


def inotify_limit_hint(exc: OSError) -> str | None:
    name = INOTIFY_LIMITS.get(exc.errno or 0)
    return None if name is None else f"raise sysctl fs.inotify.{name}"


class FsWatch:
    """One recursive watch on ``root`` with mode auto | events | polling."""

    def __init__(
        self,
        root: Path,
        *,
        mode: Mode = "auto",
        patterns: Sequence[str] = (),
        quiet_period: float = 2.0,
        max_wait: float = 60.0,
        polling_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        observer_factory: Callable[[], BaseObserver] | None = None,
    ) -> None:
        self.root = root
        self.mode = mode
        self.quiet_period = quiet_period
        self.max_wait = max_wait
        self.polling_interval = polling_interval
        self.recorder = _Recorder(root, patterns, clock)
        self._clock = clock
        self._observer_factory = observer_factory or Observer
        self._observer: BaseObserver | None = None
        self._watched_id: tuple[int, int] | None = None
        self._target: str | None = None  # the resolved root being watched
        self.active_mode: Literal["events", "polling"] | None = None
        self.rebuilds = 0
        self.fallback_reason: str | None = None

    # Lifecycle ------------------------------------------------------------------

    def start(self) -> bool:
        """Start watching; False when the data dir does not exist (check() retries)."""
        target = os.path.realpath(self.root)
        try:
            st = os.stat(target)  # noqa: PTH116  the str is what watchdog is given
        except FileNotFoundError:
            return False
        self.recorder.root = target
        want_polling = self.mode == "polling" or self.fallback_reason is not None
        if not want_polling:
            try:
                self._observer = self._start(self._observer_factory())
                self.active_mode = "events"
            except OSError as exc:
                hint = inotify_limit_hint(exc)
                if self.mode == "events" or hint is None:
                    if hint is not None:
                        raise ConfigError(
                            f"watch.mode = events: cannot watch {self.root}: {exc.strerror} "
                            f"({hint}, or use watch.mode = polling)"
                        ) from None
                    raise
                self.fallback_reason = f"{exc.strerror or exc}; {hint}"
                log.warning(
                    "inotify_limit_falling_back_to_polling",
                    data_dir=str(self.root),
                    error=str(exc),
                    hint=hint,
                    sysctl=f"fs.inotify.{INOTIFY_LIMITS[exc.errno or 0]}",
                )
                want_polling = True
        if want_polling:
            self._observer = self._start(PollingObserver(timeout=self.polling_interval))
            self.active_mode = "polling"
        self._watched_id = (st.st_dev, st.st_ino)
        self._target = target
        extra = {} if target == str(self.root) else {"target": target}
        log.info("watching", data_dir=str(self.root), mode=self.active_mode, **extra)
        return True

    def _start(self, observer: BaseObserver) -> BaseObserver:
        observer.daemon = True
        observer.schedule(self.recorder, self.recorder.root, recursive=True)
        try:
            observer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                observer.stop()
            raise
        return observer

    def stop(self) -> None:
        obs, self._observer = self._observer, None
        self._watched_id = None
        self._target = None
        if obs is not None:
            obs.stop()
            with contextlib.suppress(RuntimeError):
                obs.join(timeout=5)

    # Health ---------------------------------------------------------------------

    def problem(self) -> str | None:
        """Why the current watch is no longer trustworthy, or None."""
        if self._observer is None:
            return "not watching"
        if not self._observer.is_alive():
            return "observer thread died"
        emitters = self._observer.emitters
        if not emitters or not all(e.is_alive() for e in emitters):
            return "emitter thread died"
        target = os.path.realpath(self.root)
        try:
            st = os.stat(target)  # noqa: PTH116
        except FileNotFoundError:
            return "data dir deleted"
        if target != self._target:
            return f"data dir now resolves to {target}"  # a link made, retargeted or removed
        if (st.st_dev, st.st_ino) != self._watched_id:
            return "data dir replaced"
        return None

    def check(self) -> str | None:
        """Rebuild a broken watch; returns the reason when something was wrong.

        A rebuild also records a change, because events were possibly missed.
        """
        reason = self.problem()
        if reason is None:
            return None
        was_watching = self._observer is not None
        self.stop()
        if self.start():
            if was_watching or self.rebuilds:
                log.warning("watch_rebuilt", data_dir=str(self.root), reason=reason)
            self.rebuilds += 1
            self.recorder.note()
        elif was_watching:
            log.warning("data_dir_missing", data_dir=str(self.root), reason=reason)
            self.recorder.note()
        return reason

    @property
    def watching(self) -> bool:
        return self._observer is not None

    # Debounce -------------------------------------------------------------------

    def batch_due(self) -> float | None:
        """Seconds until the pending batch is due (0: now); None when nothing is pending."""
        batch = self.recorder.peek()
        if batch is None:
            return None
        now = self._clock()
        quiet_at = batch.last_at + self.quiet_period
        forced_at = batch.first_at + self.max_wait
        return max(0.0, min(quiet_at, forced_at) - now)

    def take(self) -> Batch | None:
        return self.recorder.take()
