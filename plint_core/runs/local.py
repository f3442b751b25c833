"""A first-in, first-out queue of worker processes on this machine.

:class:`LocalExecutor` keeps ``slots`` worker processes (``PLINT_WORKERS``;
default one, or one per GPU). A task waits in line until a slot is free, then
runs in that slot's process, which serves task after task: on Linux forked
from a server process that has imported torch and the engine once
(:func:`worker_context`), elsewhere a fresh interpreter (``spawn``), with the CPU threads its slot is worth
(:func:`plint_core.data.loader.usable_cores`, less one core that stays with the
web server, divided by the slots) and, with several GPUs, one GPU of its own.
(Running workers at a lower ``nice`` priority instead was measured worse: any
busy process at normal priority starved them, bench/RESULTS.md.) Progress reports come back over a pipe,
at most a few per second.

Cancelling a queued task withdraws it. A running one is asked to stop at its
next step; if it has not stopped after :data:`CANCEL_GRACE_SECONDS` its process
is killed and replaced. Either way nothing partial is stored: the run store
publishes a result only when it is complete. A worker whose parent dies exits
at once; :meth:`LocalExecutor.shutdown` (registered at exit by its users)
ends the workers with their parent.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
import os
import queue
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any, Callable

from ..env_settings import env_count
from ..errors import PlintError, RunCancelled
from .executor import CANCELLED, DONE, FAILED, FINISHED, Executor, Handle, Status

__all__ = ["CANCEL_GRACE_SECONDS", "RETIRE_ENV", "WORKERS_ENV", "LocalExecutor", "default_slots", "default_threads",
           "retire_threshold", "worker_context"]

WORKERS_ENV = "PLINT_WORKERS"
"""Environment variable: the number of worker processes (tasks that run at once)."""
CANCEL_GRACE_SECONDS = 20.0
RETIRE_ENV = "PLINT_WORKER_RETIRE_GB"
"""Environment variable: a worker holding more resident memory than this many GB (10⁹ bytes) after a task
exits, and the slot's next task starts a fresh one (default :data:`RETIRE_ABOVE_GB`; ``0``: after every
task; ``off``: never)."""
RETIRE_ABOVE_GB = 1.0
"""A worker that has just imported torch holds about 0.5 GB; one that has pushed a 224-pixel data set
through a ResNet-18 still held 1.17 GB after it (bench/RESULTS.md), memory its next task would keep and
build on. A container is charged for the server and its workers together: retiring such a worker hands
that memory back, at the cost of a fresh start (torch's import, about 2 s) for the next task."""
"""How long a running task may take to stop after *Cancel* before its process is killed."""
REPORT_EVERY_SECONDS = 0.2
PRELOAD = ("torch", "plint_core.runs.tasks", "plint_core.pipeline")
"""What the fork server imports once, before it forks any worker (none of it touches CUDA at import)."""
log = logging.getLogger(__name__)


def worker_context():
    """How worker processes start: on Linux, forked from a fork server (``forkserver``) that has imported
    :data:`PRELOAD`; elsewhere ``spawn``.

    A spawned worker imports torch and the engine before its first task: 3-4 s on a 2-core machine, paid again by
    every fresh worker (a retired one, one replacing a killed one, every CLI command). A forked one starts in a
    fraction of a second. Forking the fork server, never the app's server (whose threads and sockets a fork would
    copy), keeps the workers' state clean. The workers share torch's pages with the fork server: a server holding
    torch with one idle worker measured 849 MB of ``Pss`` in all against 796 MB with a spawned worker (+53 MB,
    bench/RESULTS.md); after a worker retires, the fork server alone (about 390 MB) stays until the next task,
    where a spawned slot would hold nothing. The worker takes the caller's environment as
    it is at the worker's start (:func:`_worker_main`), as a spawned one would; only what torch reads at import
    (``ATEN_CPU_CAPABILITY``, ``OMP_NUM_THREADS``) is the fork server's, from the first worker's start.
    """
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def default_slots() -> int:
    """``$PLINT_WORKERS`` if set, else one per GPU, else 1."""
    value = env_count(WORKERS_ENV, minimum=1, what="worker processes")
    if value is not None:
        return value
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def retire_threshold() -> int | None:
    """Bytes of resident memory above which a worker exits after its task (:data:`RETIRE_ENV`); ``None``: never."""
    text = os.environ.get(RETIRE_ENV, "").strip()
    if not text:
        return int(RETIRE_ABOVE_GB * 1e9)
    if text.lower() in ("off", "never", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise PlintError(f"{RETIRE_ENV}={text!r} is not an amount of memory: give GB as a number of 0 or more "
                         "(0 = a fresh worker for every task), or 'off'")
    return int(value * 1e9)


def default_threads(slots: int, cores: int | None = None) -> int:
    """CPU threads of each of ``slots`` workers: the usable cores (:func:`plint_core.data.loader.usable_cores`)
    less one that stays with the web server, so that its reruns never wait for a job, shared out; at least 1."""
    from ..data.loader import usable_cores

    cores = usable_cores() if cores is None else cores
    return max(1, (cores - 1) // slots)


class _Slot:
    """One worker process and the thread that reads what it sends."""

    def __init__(self, executor: "LocalExecutor", index: int):
        self.executor, self.index = executor, index
        self.process: multiprocessing.process.BaseProcess | None = None
        self.handle: Handle | None = None
        self.task_id: int | None = None
        self._send = None
        self._retiring = None  # the process that said it exits after its current task

    @property
    def free(self) -> bool:
        return self.handle is None

    def _ensure_process(self) -> None:
        if self.process is not None and self.process.is_alive():
            return
        ctx = worker_context()
        commands_recv, commands_send = ctx.Pipe(duplex=False)
        events_recv, events_send = ctx.Pipe(duplex=False)
        env = dict(os.environ)  # as it is now, also for a worker forked from a fork server started earlier
        if self.executor.gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(self.index % self.executor.gpus)
        self.process = ctx.Process(target=_worker_main,
                                   args=(commands_recv, events_send, self.executor.threads, env,
                                         self.executor.retire_above),
                                   name=f"plint-worker-{self.index}")  # not a daemon: it may start loader workers
        self.process.start()
        commands_recv.close()
        events_send.close()
        self._send = commands_send
        threading.Thread(target=self._read, args=(self.process, events_recv), name=f"plint-slot-{self.index}",
                         daemon=True).start()

    def start(self, handle: Handle, task_id: int) -> None:
        self._ensure_process()
        self.handle, self.task_id = handle, task_id
        handle._start(f"local worker {self.index + 1} (pid {self.process.pid})")
        self._send.send(("run", task_id, handle.task))

    def cancel(self) -> None:
        try:
            self._send.send(("cancel", self.task_id))
        except (OSError, BrokenPipeError):
            pass
        process = self.process
        timer = threading.Timer(self.executor.cancel_grace, self._kill_if_still, args=(process, self.task_id))
        timer.daemon = True
        timer.start()

    def _kill_if_still(self, process, task_id: int) -> None:
        with self.executor._lock:
            if self.process is not process or self.task_id != task_id or self.handle is None:
                return
        log.warning("worker %s did not stop within %.0f s of Cancel: killing it", process.pid, self.executor.cancel_grace)
        process.kill()

    def stop(self, wait: bool) -> None:
        if self.process is None:
            return
        try:
            self._send.send(("stop",))
        except (OSError, BrokenPipeError):
            pass
        if wait:
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)

    def _read(self, process, events) -> None:
        while True:
            try:
                message = events.recv()
            except (EOFError, OSError):
                break
            kind, task_id = message[0], message[1]
            with self.executor._lock:
                handle = self.handle if task_id == self.task_id else None
            if handle is None:
                continue
            if kind == "progress":
                handle._report(*message[2:])
            elif kind == "retiring":
                with self.executor._lock:
                    self._retiring = process
            else:
                self._finished(process, kind, message[2] if len(message) > 2 else None)
        process.join(5)
        with self.executor._lock:
            died = self.process is process and self.handle is not None
        if died:
            code = process.exitcode
            self._finished(process, "died", code)

    def _finished(self, process, kind: str, value: Any) -> None:
        with self.executor._lock:
            handle, self.handle, self.task_id = self.handle, None, None
            if kind == "died" or self._retiring is process:
                self.process, self._retiring = None, None  # a retiring one exits by itself
        if handle is None:
            return
        if kind == "done":
            handle._finish(DONE, result=value)
        elif kind == "cancelled" or (kind == "died" and handle.cancel_asked):
            handle._finish(CANCELLED)
        elif kind == "failed":
            handle._finish(FAILED, error=value)
        else:
            handle._finish(FAILED, error=(
                f"the worker process running the {handle.task.label} stopped unexpectedly (exit code {value}; "
                "for example out of memory): nothing of it was stored. Try again, with fewer training points "
                "or a smaller batch if it keeps happening."))
        self.executor._dispatch()


class LocalExecutor(Executor):
    """Worker processes on this machine, ``slots`` tasks at a time, first in, first out."""

    name = "local"

    def __init__(self, slots: int | None = None, *, threads: int | None = None,
                 cancel_grace: float = CANCEL_GRACE_SECONDS, retire_above: int | None | str = "env"):
        self.slots = default_slots() if slots is None else int(slots)
        if self.slots < 1:
            raise PlintError(f"a local executor needs at least one worker, got {slots}")
        self.threads = threads or default_threads(self.slots)
        self.gpus = _gpu_count()
        self.cancel_grace = cancel_grace
        self.retire_above = retire_threshold() if retire_above == "env" else retire_above
        """Resident bytes above which a worker exits after its task (:func:`retire_threshold`)."""
        self._lock = threading.RLock()
        self._queue: deque[tuple[int, Handle]] = deque()
        self._slots = [_Slot(self, i) for i in range(self.slots)]
        self._ids = itertools.count(1)
        self._closed = False

    def submit(self, task: Any, on_report: Callable[[Status], None] | None = None) -> Handle:
        if dataclasses.is_dataclass(task) and any(f.name == "executor" for f in dataclasses.fields(task)):
            task = dataclasses.replace(task, executor=self.name)  # recorded with the result
        handle = Handle(task, self, on_report)
        with self._lock:
            if self._closed:
                raise PlintError("the executor has been shut down")
            self._queue.append((next(self._ids), handle))
        self._dispatch()
        return handle

    def place(self, handle: Handle) -> int | None:
        with self._lock:
            for i, (_, queued) in enumerate(self._queue):
                if queued is handle:
                    return i + 1
        return None

    def cancel(self, handle: Handle) -> None:
        with self._lock:
            for item in list(self._queue):
                if item[1] is handle:
                    self._queue.remove(item)
                    handle._finish(CANCELLED)
                    return
            slot = next((s for s in self._slots if s.handle is handle), None)
        if slot is not None:
            slot.cancel()

    def _dispatch(self) -> None:
        with self._lock:
            if self._closed:
                return
            for slot in self._slots:
                if not self._queue:
                    break
                if slot.free:
                    task_id, handle = self._queue.popleft()
                    if handle.state in FINISHED:
                        continue
                    try:
                        slot.start(handle, task_id)
                    except Exception as exc:  # noqa: BLE001 - a worker that cannot start fails its task, not the app
                        slot.handle = slot.task_id = None
                        handle._finish(FAILED, error=f"could not start a worker process: {exc}")

    def shutdown(self, wait: bool = True) -> None:
        """Withdraw queued tasks, stop running ones and end the worker processes."""
        with self._lock:
            self._closed = True
            queued = [h for _, h in self._queue]
            self._queue.clear()
        for handle in queued:
            handle._finish(CANCELLED)
        for slot in self._slots:
            if slot.handle is not None:
                slot.handle._cancel_asked.set()
            slot.stop(wait)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# ---------------------------------------------------------------------- in the worker process
def _worker_main(commands, events, threads: int, env: dict[str, str], retire_above: int | None = None) -> None:
    os.environ.clear()
    os.environ.update(env)
    from ..device import resident_bytes, set_threads, trim_memory

    set_threads(threads)
    tasks: queue.Queue = queue.Queue()
    cancelled: set[int] = set()
    current: dict[str, Any] = {"id": None, "event": threading.Event()}
    send_lock = threading.Lock()

    def send(*message) -> None:
        with send_lock:
            try:
                events.send(message)
            except OSError:  # a broken pipe: the parent is gone (killed), and nobody will read what this task does
                os._exit(1)

    def listen() -> None:
        while True:
            try:
                message = commands.recv()
            except (EOFError, OSError):  # the parent is gone: nobody will read the result
                os._exit(1)
            if message[0] == "run":
                tasks.put(message[1:])
            elif message[0] == "cancel":
                cancelled.add(message[1])
                if current["id"] == message[1]:
                    current["event"].set()
            elif message[0] == "stop":
                tasks.put(None)
                return

    threading.Thread(target=listen, name="plint-worker-commands", daemon=True).start()
    while (item := tasks.get()) is not None:
        task_id, task = item
        cancel = threading.Event()
        current["id"], current["event"] = task_id, cancel
        if task_id in cancelled:
            cancel.set()
        last = [0.0, None]

        def report(stage: str, fraction: float, detail: Any = None, task_id=task_id, last=last) -> None:
            now = time.monotonic()
            if stage != last[1] or now - last[0] >= REPORT_EVERY_SECONDS or fraction >= 1.0:
                last[0], last[1] = now, stage
                send("progress", task_id, stage, fraction, detail)

        try:
            if cancel.is_set():
                raise RunCancelled("cancelled before it started")
            outcome = ("done", task_id, task.run(report, cancel))
        except RunCancelled:
            outcome = ("cancelled", task_id)
        except PlintError as exc:
            outcome = ("failed", task_id, str(exc))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller as one message, logged here in full
            traceback.print_exc()
            outcome = ("failed", task_id, f"the {task.label} failed unexpectedly ({type(exc).__name__}: {exc}). "
                                          "Try again; if it keeps failing, report it with the server log.")
        finally:
            current["id"] = None
        trim_memory()
        retire = retire_above is not None and (resident_bytes() or 0) > retire_above
        if retire:  # said first, so that the slot starts a fresh process for its next task
            send("retiring", task_id)
        send(*outcome)
        if retire:
            break
