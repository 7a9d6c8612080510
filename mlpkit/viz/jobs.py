"""A run of work that can be started once, stopped, and watched: the state machine behind the Run/Stop panels.

Kept free of widgets so that it is tested without a kernel. ``work(settings, job)`` receives a frozen
copy of the settings read at start (a slider moved mid-run changes nothing) and polls
``job.stop_requested`` between steps (training returns it from its callback; MD breaks its loop).
"""

from __future__ import annotations

import threading
import traceback
from types import MappingProxyType
from typing import Any, Callable, Mapping

IDLE, RUNNING, STOPPING, FINISHED, STOPPED, FAILED = "idle", "running", "stopping", "finished", "stopped", "failed"


class Job:
    """At most one run at a time; ``on_change(job)`` is called after every change of state or message."""

    def __init__(self, on_change: Callable[[Job], None] | None = None):
        self.on_change = on_change
        self.state = IDLE
        self.progress = ""  # the work's latest report
        self.settings: Mapping[str, Any] = MappingProxyType({})
        self.result = None
        self.error: BaseException | None = None
        self.traceback = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._done.set()

    @property
    def running(self) -> bool:
        return self.state in (RUNNING, STOPPING)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def start(self, work: Callable[[Mapping[str, Any], Job], Any], settings: Mapping[str, Any]) -> bool:
        """Run ``work`` with a frozen copy of ``settings`` in a daemon thread; False (and nothing started)
        while a run is going. Errors end up in ``error`` and the status line."""
        with self._lock:
            if self.running:
                return False
            self._stop.clear()
            self._done.clear()
            self.state, self.progress, self.result, self.error, self.traceback = RUNNING, "", None, None, ""
            self.settings = MappingProxyType(dict(settings))
        self._notify()
        threading.Thread(target=self._run, args=(work,), daemon=True).start()
        return True

    def stop(self) -> None:
        """Ask the running work to stop after its current step; what it has done so far is kept."""
        with self._lock:
            if self.state != RUNNING:
                return
            self._stop.set()
            self.state = STOPPING
        self._notify()

    def report(self, progress: str) -> None:
        """A progress line from the work, shown in the status line."""
        self.progress = progress
        self._notify()

    @property
    def status(self) -> str:
        """One line for people: the state and the latest progress (or the error)."""
        words = {IDLE: "ready", RUNNING: "running", STOPPING: "stopping after the current step",
                 FINISHED: "done", STOPPED: "stopped (results so far kept)", FAILED: "failed"}[self.state]
        detail = f"{type(self.error).__name__}: {self.error}" if self.error is not None else self.progress
        return f"{words}: {detail}" if detail else words

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends; False if ``timeout`` (s) passed first."""
        return self._done.wait(timeout)

    def _run(self, work) -> None:
        try:
            result, error, trace = work(self.settings, self), None, ""
        except Exception as caught:  # a failed run must leave the panel usable, not kill the thread silently
            result, error, trace = None, caught, traceback.format_exc()
        with self._lock:  # one transition, so a Stop pressed as the work ends cannot leave it "stopping" for good
            self.result, self.error, self.traceback = result, error, trace
            self.state = FAILED if error is not None else STOPPED if self._stop.is_set() else FINISHED
        self._notify()  # the panel is refreshed before anyone waiting is released
        self._done.set()

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change(self)
