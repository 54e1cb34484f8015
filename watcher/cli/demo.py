"""`watcher demo`: the whole story in about a minute, on the real components, in one directory.

sample data → v1 promoted; new data → exactly one trigger → v2 promoted; poor
live accuracy → ModelAccuracyLow → automatic rollback to v1; `watcher status`.
No servers: MLflow on SQLite and the local pipeline backend. The daemon (the
components ``build_components`` makes, with short intervals) runs in a thread
of this process; the story side only does what a user would do (write data,
report live accuracy) and waits on the state history the daemon writes.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from watcher.errors import UsageError, WatcherError
from watcher.runtime.state import META_HEARTBEAT, META_POLICY

if TYPE_CHECKING:
    from rich.console import Console

    from watcher.backends.mlflow_registry import MlflowRegistry
    from watcher.config import Config
    from watcher.ports import RegistryMode
    from watcher.runtime.state import StateStore
    from watcher.trigger.delivery import Delivery

T = TypeVar("T")

MODEL = "iris-classifier"
POLL_INTERVAL = 1.0  # registry poll; the daemon default is 30 s
QUIET_PERIOD = 0.5  # data settle time; default 2 s
FOLLOW_INTERVAL = 1.0  # how often run states are checked; default 10 s
MIN_ACCURACY = 0.85  # the live-accuracy policy threshold
GOOD_LIVE, BAD_LIVE, SAMPLES = 0.96, 0.55, 200
NOISE_FRACTION, NOISE_SEED = 0.3, 7
STEP_TIMEOUT = 120.0
STOP_TIMEOUT = 30.0
STEPS = (
    "sample data → v1 trained and promoted",
    "new data → one trigger → v2 promoted",
    "poor live accuracy → alert → automatic rollback",
    "watcher status",
)


class DemoFailed(WatcherError):
    """A step did not happen (within its deadline): exit 1, naming the step."""


@dataclass(frozen=True, slots=True)
class Options:
    directory: Path | None = None  # None: a fresh temporary dir
    keep: bool = False
    registry_mode: RegistryMode = "alias"
    step_timeout: float = STEP_TIMEOUT


def demo_config(root: Path, registry_mode: RegistryMode) -> Config:
    """Embedded defaults, everything inside ``root``, intervals short enough for a demo."""
    from watcher.config import Config

    state = root / "state"
    return Config.model_validate(
        {
            "watch": {"data_dir": str(root / "data"), "quiet_period": QUIET_PERIOD},
            "state": {"dir": str(state)},
            # Explicit, so a MLFLOW_TRACKING_URI in the environment cannot point elsewhere.
            "mlflow": {
                "tracking_uri": f"sqlite:///{state / 'mlflow.db'}",
                "registry_mode": registry_mode,
            },
            "trigger": {"backend": "local", "retry_initial": 1.0},
            # always: v2 is promoted deterministically (if_better would hold the worse v2).
            "pipeline": {"model_name": MODEL, "promote": "always"},
            "monitor": {
                "models": [MODEL],
                "poll_interval": POLL_INTERVAL,
                "min_accuracy": MIN_ACCURACY,
                "window": 3,
                "min_samples": 50,
                "for": 0,
            },
            "rollback": {"auto": True},
            "alerts": {"log": False},  # notifications go to state/alerts.jsonl
        }
    )


# Output ------------------------------------------------------------------------


class Story:
    """Short, timed lines: elapsed time since the start on the left."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.step = 0
        self.step_started = self.started

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def begin(self, number: int) -> None:
        self.step = number
        self.step_started = time.monotonic()
        self.console.print()
        self.console.print(f"[bold]step {number}/{len(STEPS)}: {STEPS[number - 1]}[/]")

    def say(self, text: str, *, ok: bool = False, took: float | None = None) -> None:
        mark = "[green]✓[/] " if ok else "  "
        tail = f"  [dim]({took:.1f} s)[/]" if took is not None else ""
        self.console.print(f"[dim]{self.elapsed():6.1f}s[/]  {mark}{text}{tail}")


# The daemon, in a thread -------------------------------------------------------


class DaemonThread:
    """The real components in a Daemon loop on a thread that owns their state connection."""

    def __init__(self, config: Config, registry: MlflowRegistry) -> None:
        self.config = config
        self.registry = registry
        self.stop_event = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.delivery: Delivery | None = None
        self._thread = threading.Thread(target=self._run, name="watcher-daemon", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        from watcher.app import build_components
        from watcher.runtime.daemon import Daemon
        from watcher.runtime.sdnotify import SystemdNotifier
        from watcher.runtime.state import open_state
        from watcher.trigger.delivery import Delivery

        try:
            state = open_state(self.config.state.dir)
            try:
                components = build_components(self.config, state, self.registry)
                for comp in components:
                    if isinstance(comp, Delivery):
                        comp.follow_interval = FOLLOW_INTERVAL
                        self.delivery = comp
                # Not under systemd even if the demo is started from a unit.
                daemon = Daemon(
                    state, components, notifier=SystemdNotifier(env={}), stop=self.stop_event
                )
                self.ready.set()
                daemon.run()
            finally:
                self._cancel_runs()
                state.close()
        except BaseException as exc:
            self.error = exc

    def _cancel_runs(self) -> None:
        """Runs still going (a step that timed out) end with the demo: stop their groups."""
        if self.delivery is not None:
            self.delivery.cancel_following()

    def stop(self) -> None:
        self.stop_event.set()
        self._thread.join(STOP_TIMEOUT)


# The story ----------------------------------------------------------------------


@dataclass
class Demo:
    root: Path
    config: Config
    story: Story
    timeout: float
    registry_for: Callable[[Config], MlflowRegistry]  # the process's one adapter
    daemon: DaemonThread | None = None
    view: StateStore | None = None
    registry: MlflowRegistry | None = None

    # Waiting ----------------------------------------------------------------

    def wait(self, what: str, check: Callable[[], T | None], poll: float = 0.2) -> T:
        """Poll ``check`` until it returns a value; DemoFailed at the step's deadline."""
        deadline = self.story.step_started + self.timeout
        while True:
            value = check()
            if value is not None and value is not False:
                return value
            if self.daemon is not None and not self.daemon.alive():
                raise self.failed(f"{what}: the daemon stopped ({self.daemon.error!r})")
            if time.monotonic() >= deadline:
                raise self.failed(f"{what} did not happen within {self.timeout:g} s")
            time.sleep(poll)

    def failed(self, detail: str) -> DemoFailed:
        n = self.story.step
        return DemoFailed(f"demo step {n} ({STEPS[n - 1]}): {detail}")

    # State the daemon wrote ---------------------------------------------------

    @property
    def state(self) -> StateStore:
        assert self.view is not None  # noqa: S101  (set in run())
        return self.view

    def _rows(self, sql: str, *args: object) -> list[Any]:
        try:
            return self.state.conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []  # a table a migration is still creating; next poll

    def outbox(self) -> list[tuple[str, str, str, str | None]]:
        from watcher.trigger.outbox import Outbox

        try:
            rows = Outbox(self.state).rows()
        except sqlite3.OperationalError:
            return []  # a table a migration is still creating; next poll
        return [(r.run_id, r.data_hash, r.status, r.run_state) for r in rows]

    def production(self) -> str | None:
        """Production as the daemon last saw it."""
        rows = self._rows("SELECT production_version FROM registry_models WHERE model = ?", MODEL)
        return None if not rows or rows[0][0] is None else str(rows[0][0])

    def policy(self) -> tuple[str, str] | None:
        """(version, status) of the live-accuracy policy for the model."""
        raw = self.state.get_meta(META_POLICY)
        doc = json.loads(raw).get(MODEL) if raw else None
        return None if not doc else (str(doc["version"]), str(doc["status"]))

    def event(self, kind: str, version: str) -> str | None:
        for ev in self.state.events(model=MODEL, kinds=[kind]):
            if ev.version == version:
                return ev.message
        return None

    def notified(self, alertname: str) -> bool:
        path = self.config.alerts_file
        if not path.exists():
            return False
        for line in path.read_text(encoding="utf-8").splitlines():
            if json.loads(line).get("labels", {}).get("alertname") == alertname:
                return True
        return False

    def run_finished(self, run_id: str) -> str | None:
        for rid, _hash, _status, run_state in self.outbox():
            if rid == run_id and run_state in ("success", "failed"):
                if run_state == "failed":
                    raise self.failed(f"pipeline run {run_id} failed:\n{self.run_log(run_id)}")
                return run_state
        return None

    def run_log(self, run_id: str, lines: int = 15) -> str:
        path = self.config.state.dir / "runs" / f"{run_id}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def training_accuracy(self, version: str) -> str:
        assert self.registry is not None  # noqa: S101
        info = self.registry.get_version(MODEL, version)
        raw = info.tags.get("accuracy") if info is not None else None
        return "?" if raw is None else f"{float(raw):.1%}"

    # Steps ------------------------------------------------------------------

    def setup(self) -> None:
        from pipeline.sample_data import iris_table, write_csv
        from watcher.runtime.state import open_state

        cfg, story = self.config, self.story
        t0 = time.monotonic()
        self.view = open_state(cfg.state.dir)
        # Create MLflow's tables before anything else touches the DB: the daemon's first
        # poll and the first pipeline run would otherwise race to run the same migrations.
        self.registry = self.registry_for(cfg)
        self.registry.model_exists(MODEL)
        story.say(f"MLflow on SQLite ready in {_rel(cfg.state.dir, self.root)}/mlflow.db",
                  took=time.monotonic() - t0)  # fmt: skip
        self.iris = iris_table()
        self.data_file = cfg.watch.data_dir / "iris.csv"
        cfg.watch.data_dir.mkdir(parents=True, exist_ok=True)
        staged = write_csv(self.root / "iris.csv.new", self.iris)
        staged.replace(self.data_file)  # one atomic change for the watcher to see

    def step1(self) -> None:
        story = self.story
        story.begin(1)
        story.say(
            f"sample data: {_rel(self.data_file, self.root)} (iris, {len(self.iris[1])} rows)"
        )
        assert self.registry is not None  # noqa: S101  (set in setup())
        self.daemon = DaemonThread(self.config, self.registry)
        self.daemon.start()
        story.say(
            f"daemon started: watching data/, polling the registry every {POLL_INTERVAL:g} s, "
            "rollback.auto = true"
        )
        run_id = self._promoted(self.wait("the first trigger", lambda: self.outbox() or None), "1")
        self.wait(f"run {run_id} finished", lambda: self.run_finished(run_id))
        self._report("1", GOOD_LIVE)
        self.wait("v1's live accuracy evaluated", lambda: self.policy() == ("1", "ok"))
        story.say(f"watcher: v1 live accuracy {GOOD_LIVE:.0%} ≥ {MIN_ACCURACY:.0%} → ok", ok=True)

    def _promoted(self, rows: list[tuple[str, str, str, str | None]], version: str) -> str:
        """Tell the trigger (first of ``rows``), wait for ``version`` in Production; its run id."""
        run_id, data_hash = rows[0][0], rows[0][1]
        self.story.say(
            f"dataset hash {data_hash[:12]} → trigger → pipeline run {run_id[:18]}…", ok=True
        )
        t0 = time.monotonic()
        self.wait(f"v{version} in Production", lambda: self.production() == version)
        self.story.say(
            f"v{version} trained and promoted to Production "
            f"(training accuracy {self.training_accuracy(version)})",
            ok=True,
            took=time.monotonic() - t0,
        )
        return run_id

    def step2(self) -> None:
        from pipeline.sample_data import label_noise, write_csv

        story = self.story
        story.begin(2)
        noisy = label_noise(self.iris, NOISE_FRACTION, NOISE_SEED)
        staged = write_csv(self.root / "iris.csv.new", noisy)
        staged.replace(self.data_file)
        story.say(
            f"new data: iris.csv replaced, {NOISE_FRACTION:.0%} of its labels wrong "
            "(a broken labelling job)"
        )
        rows = self.wait("a trigger for the new data", lambda: self.outbox()[1:] or None)
        run_id = self._promoted(rows, "2")
        story.say(
            "promoted although worse: the demo sets pipeline.promote = always "
            "(the default, if_better, would hold it)"
        )
        self.wait(f"run {run_id} finished", lambda: self.run_finished(run_id))
        triggers = len(self.outbox())
        if triggers != 2:
            raise self.failed(f"expected exactly one trigger for the new data, saw {triggers - 1}")
        story.say("exactly one trigger for the new data", ok=True)

    def step3(self) -> None:
        story = self.story
        story.begin(3)
        t0 = self._report("2", BAD_LIVE)
        self.wait("ModelAccuracyLow firing", lambda: self.event("monitor.accuracy_firing", "2"))
        story.say(
            f"watcher: v2 live accuracy {BAD_LIVE:.0%} < {MIN_ACCURACY:.0%} → "
            "alert ModelAccuracyLow firing",
            ok=True,
            took=time.monotonic() - t0,
        )

        def rolled_back() -> str | None:
            refused = self.event("rollback.refused", "2")
            if refused is not None:
                raise self.failed(refused)
            return self.event("rollback.done", "1")

        self.wait("the automatic rollback", rolled_back)
        assert self.registry is not None  # noqa: S101
        prod, bad = self.registry.production(MODEL), self.registry.get_version(MODEL, "2")
        if prod != "1" or bad is None or not bad.quarantined:
            raise self.failed(f"registry not rolled back: Production v{prod}, v2 {bad}")
        story.say(
            "automatic rollback: Production v2 → v1, v2 quarantined (watcher.quarantined = true)",
            ok=True,
            took=time.monotonic() - t0,
        )
        self.wait(
            "the alert notifications",
            lambda: self.notified("ModelAccuracyLow") and self.notified("ModelRolledBack"),
        )
        self.wait("v1 back under watch", lambda: self.policy() == ("1", "ok"))
        alerts = _rel(self.config.alerts_file, self.root)
        story.say(f"notified: ModelAccuracyLow, ModelRolledBack → {alerts}", ok=True)

    def step4(self) -> None:
        from watcher.cli.commands.status import render
        from watcher.cli.status import status_of

        self.story.begin(4)
        # A heartbeat from the running daemon, so status shows it alive and healthy.
        self.wait("the daemon's heartbeat", lambda: self.state.get_meta(META_HEARTBEAT))
        render(status_of(self.config), self.story.console)

    def _report(self, version: str, accuracy: float) -> float:
        """Report live accuracy as a user's scoring job would; returns when (monotonic)."""
        from watcher.backends.mlflow_observations import report_accuracy

        assert self.registry is not None  # noqa: S101
        report_accuracy(MODEL, accuracy, SAMPLES, version=version, registry=self.registry)
        at = time.monotonic()
        self.story.say(f"reported live accuracy {accuracy:.0%} for v{version} ({SAMPLES} samples)")
        return at

    def close(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
        if self.view is not None:
            self.view.close()


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


@contextmanager
def _workdir(options: Options) -> Iterator[Path]:
    """The demo's directory, as cwd (MLflow on SQLite puts ./mlruns there); removed unless kept."""
    if options.directory is not None:
        root = options.directory.absolute()
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise UsageError(f"--dir {options.directory}: must be an empty or new directory")
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="watcher-demo-")).resolve()
    previous = Path.cwd()
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(previous)
        if not options.keep and options.directory is None:
            shutil.rmtree(root, ignore_errors=True)
            if root.exists():  # a child that was just stopped may still have written
                time.sleep(1.0)
                shutil.rmtree(root, ignore_errors=True)


def run(
    options: Options, console: Console, registry_for: Callable[[Config], MlflowRegistry]
) -> float:
    """Tell the story; returns its duration. DemoFailed names the step that did not happen.
    ``registry_for``: the process's MLflow adapter for the demo's config."""
    with _workdir(options) as root:
        story = Story(console)
        kept = options.keep or options.directory is not None
        console.print(
            f"[bold]registry-watcher demo[/] in {root}" + ("" if kept else " (temporary)")
        )
        console.print(
            f"  MLflow on SQLite, local pipeline, registry mode {options.registry_mode}, no servers"
        )
        config = demo_config(root, options.registry_mode)
        demo = Demo(root, config, story, options.step_timeout, registry_for)
        try:
            demo.setup()
            demo.step1()
            demo.step2()
            demo.step3()
            demo.step4()
        finally:
            demo.close()
        took = story.elapsed()
        console.print()
        console.print(f"[bold green]✓ demo complete in {took:.0f} s[/]: every step happened.")
        if kept:
            console.print(f"  kept {root}; its history:")
            console.print(
                f"  WATCHER_STATE__DIR={root / 'state'} WATCHER_WATCH__DATA_DIR={root / 'data'} "
                "watcher history"
            )
        return took
