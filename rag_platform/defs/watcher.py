"""The warm worker of `ui` and `demo`: watches the registered source folders and runs the same refresh job
in this long-lived process as soon as a burst of saves settles.

It is a trigger, not a second pipeline: each run is ``execute_refresh`` (the refresh job, against the platform's
Dagster instance, so it shows in the UI's run history), and every step of that job (ingest, dbt, GX, the index)
runs as from the CLI or the sensor. What it saves is the launch: no new process, no imports, no model or dbt
load per run. File events only say "look now": what to do is decided by comparing the sources with the
warehouse (the sensor's own comparison), and a rescan every ``rescan_s`` catches what events miss. The sensor
stays the backstop where no watcher runs (daemon only), and leaves recent changes to a live watcher.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from rag_platform.change_detection import beat_watcher, stop_watcher
from rag_platform.config import Settings
from rag_platform.defs.runner import JobOutcome, execute_refresh, warm_up
from rag_platform.defs.sensors import check_sources

logger = logging.getLogger("rag_platform.watcher")


@dataclass(frozen=True, slots=True)
class WatchedRun:
    """A run the watcher started: the change set it was started for, and how it ended."""

    changes: str
    outcome: JobOutcome


class _Nudge(FileSystemEventHandler):
    def __init__(self, home: Path, nudge: Callable[[], None]):
        self.home = home
        self.nudge = nudge

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return  # reads (our own ingest among them) change nothing
        paths = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
        if all(not p or Path(p).is_relative_to(self.home) for p in paths):
            return  # the platform's own writes, when a source folder holds the home
        self.nudge()


class SourceWatcher:
    """Call ``start`` once, then ``poll`` from the thread that should run the refreshes (the main thread of
    `ui`/`demo`: Dagster's in-process execution handles interrupts there); ``stop`` at the end."""

    def __init__(
        self,
        settings: Settings,
        debounce_s: float = 0.25,
        max_debounce_s: float = 2.0,
        rescan_s: float = 10.0,
        log_level: str = "CRITICAL",
        on_run: Callable[[WatchedRun], None] | None = None,
    ):
        self.settings = settings
        self.debounce_s = debounce_s
        self.max_debounce_s = max_debounce_s
        self.rescan_s = rescan_s
        self.log_level = log_level
        self.on_run = on_run
        self.runs: list[WatchedRun] = []
        self._event = threading.Event()
        self._observer: Observer | None = None  # type: ignore[valid-type]  # watchdog's factory alias
        self._watched: set[Path] = set()
        self._failed_state: str | None = None  # a run for this corpus state failed: wait for a new change
        self._last_scan = 0.0

    def start(self, warm: bool = True) -> None:
        if warm:
            warm_up(self.settings)  # model, dbt and GX load now, not in the first run
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        self._event.set()  # look once at start: changes made while nothing watched
        beat_watcher(self.settings)

    def stop(self) -> None:
        stop_watcher(self.settings)
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def nudge(self) -> None:
        self._event.set()

    @property
    def folders(self) -> set[Path]:
        return set(self._watched)

    def poll(self, timeout_s: float) -> WatchedRun | None:
        """Wait up to ``timeout_s`` for a file event (or the periodic rescan); once saves settle, run the
        refresh job if the sources differ from the warehouse. Returns the run started, if any."""
        beat_watcher(self.settings)
        due = self._last_scan + self.rescan_s - time.monotonic()
        if not self._event.wait(max(0.0, min(timeout_s, due))) and due > timeout_s:
            return None
        self._settle()
        return self.refresh_if_pending()

    def _settle(self) -> None:
        """Until no event for ``debounce_s`` (at most ``max_debounce_s``): one run for a burst of saves."""
        deadline = time.monotonic() + self.max_debounce_s
        self._event.clear()
        while time.monotonic() < deadline and self._event.wait(self.debounce_s):
            self._event.clear()

    def refresh_if_pending(self) -> WatchedRun | None:
        self._last_scan = time.monotonic()
        check = check_sources(self.settings, dg.DagsterInstance.get())
        self._watch(check.folders)
        if check.running is not None:
            # That run (CLI, UI or sensor) may not take what was saved after it ingested: look again soon.
            self._last_scan = time.monotonic() - self.rescan_s + 1.0
        pending = check.pending
        if pending is None or pending.empty or pending.fingerprint == self._failed_state:
            return None
        changes = pending.changes.describe()
        outcome = execute_refresh(
            self.settings, full=False, trigger="watcher", log_level=self.log_level, changes=changes
        )
        self._failed_state = None if outcome.success else pending.fingerprint
        run = WatchedRun(changes, outcome)
        self.runs.append(run)
        if self.on_run is not None:
            self.on_run(run)
        self._event.set()  # saves made during the run: the next poll compares again at once
        return run

    def _watch(self, folders: list[Path]) -> None:
        if self._observer is None:
            return
        for folder in folders:
            if folder in self._watched or not folder.is_dir():
                continue
            try:
                self._observer.schedule(_Nudge(self.settings.home, self.nudge), str(folder), recursive=True)
            except OSError as exc:  # e.g. the inotify watch limit: the periodic rescan still sees changes
                logger.warning("cannot watch %s (%s); changes there are found every %.0f s", folder, exc, self.rescan_s)
            self._watched.add(folder)
