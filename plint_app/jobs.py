"""Background jobs: long computations (embedding fits, fine-tuning) off the script thread.

A Streamlit script run must stay short: a widget interaction interrupts it.
So a :class:`Job` runs its function in a daemon thread and keeps the latest
progress report, which a page polls (``st.fragment(run_every=...)``); the
page never blocks. :class:`JobRegistry` shares one job per key, so two
sessions asking for the same embedding wait on one fit.

The computing itself happens in a worker process: a job's function submits a
task to the executor and relays its place in line, progress and outcome
(:func:`relay`), so the thread in the server only waits.

At interpreter exit, running jobs are cancelled and joined (:func:`stop_all`):
a daemon thread still inside torch when the process ends aborts it.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from plint_core.errors import PlintError, RunCancelled
from plint_core.runs.executor import Executor

T = TypeVar("T")
log = logging.getLogger(__name__)

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"
EXIT_WAIT_SECONDS = 60.0
_live: set["Job[Any]"] = set()
_live_lock = threading.Lock()


@dataclass(frozen=True)
class Report:
    """One progress report: ``stage`` (what runs), overall ``fraction`` in [0, 1], free-form ``detail``."""

    stage: str = "starting"
    fraction: float = 0.0
    detail: Any = None


def _detached(exc: BaseException) -> BaseException:
    """``exc`` (and the exceptions chained to it) without tracebacks. A kept error outlives its job on the page;
    its frames would keep the job's locals alive with it: loader worker processes, an upload's temporary folder,
    a model copy."""
    seen, link = set(), exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        link.__traceback__ = None
        link = link.__cause__ or link.__context__
    return exc


class Job(Generic[T]):
    """Runs ``fn(job)`` in a daemon thread; ``fn`` calls :meth:`report` and checks :attr:`cancel_event`.

    ``status`` ends as ``done`` (``result`` set), ``failed`` (``error`` set) or
    ``cancelled`` (the function raised :class:`RunCancelled`).
    """

    def __init__(self, fn: Callable[["Job[T]"], T], name: str = "job"):
        self.name = name
        self.cancel_event = threading.Event()
        self.status = RUNNING
        self.result: T | None = None
        self.error: BaseException | None = None
        self.started = time.time()
        self.finished: float | None = None
        self.part: tuple[int, int, Any] | None = None
        """For a job that runs several tasks in turn, ``(index, count, label)`` of the one it is on."""
        self.results: list[Any] = []
        """For such a job, what each of its tasks gave, in order."""
        self._report = Report()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(fn,), name=f"plint-{name}", daemon=True)

    def start(self) -> "Job[T]":
        with _live_lock:
            _live.add(self)
        self._thread.start()
        return self

    def _run(self, fn: Callable[["Job[T]"], T]) -> None:
        try:
            result = fn(self)
        except RunCancelled as exc:
            self._finish(CANCELLED, error=_detached(exc))
        except BaseException as exc:  # noqa: BLE001 - reported to the page, which decides how to show it
            if not isinstance(exc, PlintError):
                # The server log the page's message points to; as text, so no log record holds the frames.
                log.error("%s failed:\n%s", self.name, "".join(traceback.format_exception(exc)).rstrip())
            self._finish(FAILED, error=_detached(exc))
        else:
            self._finish(DONE, result=result)

    def _finish(self, status: str, result: T | None = None, error: BaseException | None = None) -> None:
        with self._lock:
            self.result, self.error, self.finished = result, error, time.time()
            self.status = status
        with _live_lock:
            _live.discard(self)

    def report(self, stage: str, fraction: float, detail: Any = None) -> None:
        """Record progress (called from the worker thread)."""
        with self._lock:
            self._report = Report(stage, min(max(float(fraction), 0.0), 1.0), detail)

    @property
    def progress(self) -> Report:
        with self._lock:
            return self._report

    @property
    def running(self) -> bool:
        return self.status == RUNNING

    @property
    def seconds(self) -> float:
        return (self.finished or time.time()) - self.started

    def cancel(self) -> None:
        """Ask the worker to stop at its next check of :attr:`cancel_event` (or :meth:`check_cancelled`)."""
        self.cancel_event.set()

    def check_cancelled(self) -> None:
        """Raise :class:`RunCancelled` if :meth:`cancel` was called (for workers without their own check)."""
        if self.cancel_event.is_set():
            raise RunCancelled(f"{self.name} cancelled")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends; ``True`` if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def user_error(self) -> str | None:
        """The message to show for a failure: a ``PlintError``'s own text, else a generic one."""
        if self.status != FAILED or self.error is None:
            return None
        if isinstance(self.error, PlintError):
            return str(self.error)
        return (f"{self.name} failed unexpectedly ({type(self.error).__name__}: {self.error}). "
                "Try again; if it keeps failing, report it with the server log.")


class JobRegistry:
    """Jobs by key, shared between sessions.

    A cancelled job is replaced on the next request; a failed one only with
    ``retry`` (so its error stays on screen until the user asks again).
    """

    def __init__(self) -> None:
        self._jobs: dict[str, Job[Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Job[Any] | None:
        with self._lock:
            return self._jobs.get(key)

    def items(self) -> list[tuple[str, Job[Any]]]:
        """A snapshot of ``(key, job)`` pairs."""
        with self._lock:
            return list(self._jobs.items())

    def ensure(self, key: str, fn: Callable[[Job[Any]], Any], name: str = "job", *, retry: bool = False) -> Job[Any]:
        """The job for ``key``, started with ``fn`` if there is none (or, with ``retry``, if it failed)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.status == CANCELLED or (retry and job.status == FAILED):
                job = Job(fn, name).start()
                self._jobs[key] = job
            return job


@dataclass(frozen=True)
class Queued:
    """The detail of a job waiting for a worker: its ``place`` in line (1: next)."""

    place: int

    def in_line(self) -> str:
        """``1st in line``, ``2nd in line``, …"""
        n = self.place
        suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"{n}{suffix} in line"


RELAY_POLL_SECONDS = 0.2


def relay(job: "Job[Any]", executor: Executor, task: Any, load: Callable[[Any], T],
          part: tuple[int, int] = (0, 1)) -> T:
    """Run ``task`` on ``executor`` for ``job``: report its place in line (stage ``queued``, detail
    :class:`Queued`) and then the worker's progress, pass *Cancel* on, and return ``load(outcome)`` (the
    result, read from the run store). A failure raises :class:`PlintError` with the worker's message.
    ``part=(i, n)``: the task is the ``i``-th of ``n`` the job runs in turn, and its progress is reported as
    that share of the job's."""
    index, count = part
    handle = executor.submit(task)
    try:
        while not handle.wait(RELAY_POLL_SECONDS):
            if job.cancel_event.is_set() and not handle.cancel_asked:
                handle.cancel()
            place = handle.place
            if place is not None:
                job.report("queued", index / count, Queued(place))
            else:
                status = handle.status
                job.report(status.stage, (index + status.fraction) / count, status.detail)
        return load(handle.outcome())
    finally:
        if not handle.wait(0):  # this thread is leaving early (the server is stopping): so is the task
            handle.cancel()


@atexit.register
def stop_all(timeout: float = EXIT_WAIT_SECONDS) -> None:
    """Cancel every running job and wait for it to end (registered to run at interpreter exit)."""
    with _live_lock:
        jobs = list(_live)
    for job in jobs:
        job.cancel()
    deadline = time.monotonic() + timeout
    for job in jobs:
        job.wait(max(0.0, deadline - time.monotonic()))
