"""The executor seam: long jobs are submitted as tasks and followed through handles.

An :class:`Executor` takes a :class:`~plint_core.runs.tasks.Task` and returns a
:class:`Handle` at once. The handle says where the task stands (queued, with
its place in line; running, with the latest progress report; done, with what
the task returned (small: the key of what it stored); failed, with one message;
cancelled), and cancels it.
Whatever runs the task (a local worker process, a Ray task) reports through
the handle's ``_``-methods; callers only read it and call :meth:`Handle.cancel`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["CANCELLED", "DONE", "FAILED", "QUEUED", "RUNNING", "Executor", "Handle", "Status"]

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


@dataclass(frozen=True)
class Status:
    """One report: ``stage`` (what runs), overall ``fraction`` in [0, 1], ``detail`` (for example a
    :class:`~plint_core.finetune.Progress`)."""

    stage: str = "queued"
    fraction: float = 0.0
    detail: Any = None


class Handle:
    """A submitted task, as its executor sees it (thread-safe)."""

    def __init__(self, task: Any, executor: "Executor", on_report: Callable[[Status], None] | None = None):
        self.task = task
        self.executor = executor
        self._on_report = on_report
        self.state = QUEUED
        self.result: Any = None
        self.error: str | None = None
        self.submitted = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.where = ""
        self._status = Status()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._cancel_asked = threading.Event()

    # ---------------------------------------------------------------- read by callers
    @property
    def status(self) -> Status:
        with self._lock:
            return self._status

    @property
    def running(self) -> bool:
        return self.state in (QUEUED, RUNNING)

    @property
    def place(self) -> int | None:
        """1 for the next task to start, 2 for the one after it, …; ``None`` unless queued."""
        return self.executor.place(self) if self.state == QUEUED else None

    @property
    def cancel_asked(self) -> bool:
        return self._cancel_asked.is_set()

    @property
    def seconds(self) -> float:
        """Seconds since the task started running (0 while queued)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def cancel(self) -> None:
        """Withdraw the task if queued, or ask its worker to stop; a stopped task stores nothing."""
        self._cancel_asked.set()
        self.executor.cancel(self)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the task has finished; ``True`` if it has."""
        return self._done.wait(timeout)

    def outcome(self) -> Any:
        """What the task returned, once it has finished; raises :class:`~plint_core.errors.PlintError` (failed)
        or :class:`~plint_core.errors.RunCancelled`."""
        from ..errors import PlintError, RunCancelled

        self.wait()
        if self.state == DONE:
            return self.result
        if self.state == CANCELLED:
            raise RunCancelled(f"the {self.task.label} was cancelled")
        raise PlintError(self.error or f"the {self.task.label} failed")

    # ---------------------------------------------------------------- written by executors
    def _report(self, stage: str, fraction: float, detail: Any = None) -> None:
        status = Status(stage, min(max(float(fraction), 0.0), 1.0), detail)
        with self._lock:
            self._status = status
        if self._on_report is not None:
            self._on_report(status)

    def _start(self, where: str) -> None:
        with self._lock:
            self.state, self.started, self.where = RUNNING, time.time(), where
            self._status = Status("starting", 0.0)

    def _finish(self, state: str, result: Any = None, error: str | None = None) -> None:
        with self._lock:
            self.state, self.result, self.error, self.finished = state, result, error, time.time()
            if state == DONE:
                self._status = Status("done", 1.0, self._status.detail)
        self._done.set()


class Executor:
    """Runs tasks somewhere else; subclasses implement :meth:`submit`, :meth:`cancel`, :meth:`place` and
    :meth:`shutdown`."""

    name = "executor"

    def submit(self, task: Any, on_report: Callable[[Status], None] | None = None) -> Handle:
        """Queue ``task``; ``on_report(status)`` is called (from the executor's thread) with every report."""
        raise NotImplementedError

    def cancel(self, handle: Handle) -> None:
        raise NotImplementedError

    def place(self, handle: Handle) -> int | None:
        raise NotImplementedError

    def shutdown(self, wait: bool = True) -> None:
        raise NotImplementedError
