"""Tasks on a Ray cluster: the executor for more than one machine.

:class:`RayExecutor` connects to a running Ray cluster (``ray.init(address)``:
``auto`` for the cluster this machine belongs to, ``host:6379``, or
``ray://head:10001`` through Ray Client) and submits each task as one Ray task:
``num_gpus=1`` for a task on the GPU (``device`` ``cuda``, or ``auto`` when the
cluster has GPUs), otherwise ``cpus`` CPUs, which are also its torch threads.
``max_retries=0``: a task whose worker dies is not silently run again.

The worker runs the task as a local worker process would
(:meth:`~plint_core.runs.tasks.RunTask.run`), in the folder the caller runs in
(so relative paths mean the same thing), and writes the result into the run
store, which must therefore be on a file system that every node shares under
the same path, like the model and data files. A small actor (one per executor)
carries its progress reports back, at most a few per second; a thread here
reads them into the :class:`~plint_core.runs.executor.Handle`.

*Cancel* maps to ``ray.cancel``: a waiting task is withdrawn; a running one is
interrupted (``KeyboardInterrupt`` in the worker, which it treats as a cancel),
and if it has not stopped after ``cancel_grace`` seconds its worker process is
killed (``ray.cancel(force=True)``). A worker that dies (killed, out of memory,
its node lost) fails its task with one message. Either way nothing partial is
stored: the run store publishes a result only when it is complete.

A handle's :attr:`~plint_core.runs.executor.Handle.place` counts only this
executor's own tasks that have not started, in the order they were submitted;
Ray does not promise that order, and tasks of other clients of the cluster are
not counted.

Ray is imported only here, when an executor is made; the code must be
importable on every worker (installed there, or shipped with ``runtime_env``,
see docs/executor.md, section *Ray*).
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import socket
import threading
import time
import traceback
from typing import Any, Callable

from ..errors import PlintError, RunCancelled
from .executor import CANCELLED, DONE, FAILED, FINISHED, QUEUED, Executor, Handle, Status
from .local import CANCEL_GRACE_SECONDS, REPORT_EVERY_SECONDS

__all__ = ["RayExecutor", "import_ray"]

POLL_SECONDS = 0.2
"""How long the reading thread waits for progress reports before it looks at the tasks again."""
CONNECT_CHECK_SECONDS = 5.0
"""How long to wait for an explicit ``host:port`` to answer before ``ray.init`` (which would retry for minutes)."""
SETUP_HINT = "see docs/executor.md, section Ray"
log = logging.getLogger(__name__)


def import_ray():
    """The ``ray`` module, or a :class:`PlintError` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise PlintError("PLINT_EXECUTOR=ray but Ray is not installed here: pip install -r requirements-ray.txt, or "
                         "set PLINT_EXECUTOR=local") from None
    return ray


class _Inbox:
    """The actor that collects the workers' messages until the reading thread takes them."""

    def __init__(self):
        self._items: list = []
        self._event = asyncio.Event()

    async def put(self, item) -> None:
        self._items.append(item)
        self._event.set()

    async def take(self, timeout: float) -> list:
        if not self._items:
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        items, self._items = self._items, []
        self._event.clear()
        return items


@dataclasses.dataclass
class _Entry:
    id: int
    handle: Handle
    ref: Any = None
    started: bool = False


class RayExecutor(Executor):
    """Tasks run as Ray tasks on the cluster at ``address``.

    Parameters
    ----------
    address: str
        What ``ray.init`` connects to: ``auto`` (the cluster this machine is a node of), ``host:port`` (its
        GCS, usually port 6379) or ``ray://host:10001`` (Ray Client).
    runtime_env: dict, optional
        Ray's ``runtime_env`` for the tasks (for example ``{"working_dir": ...}`` to ship the code).
    cpus: int
        CPUs each task reserves on the cluster, and its torch threads.
    cancel_grace: float
        Seconds a running task has to stop after *Cancel* before its worker is killed.

    If this process is connected to Ray already, that connection is used as it is (``address`` and
    ``runtime_env`` are then ignored) and left open by :meth:`shutdown`; otherwise :meth:`shutdown` closes the
    one made here. Raises :class:`~plint_core.errors.PlintError` when Ray is not installed or the cluster cannot
    be reached.
    """

    name = "ray"

    def __init__(self, address: str = "auto", *, runtime_env: dict | None = None, cpus: int = 1,
                 cancel_grace: float = CANCEL_GRACE_SECONDS):
        if int(cpus) < 1:
            raise PlintError(f"a Ray task needs at least one CPU, got {cpus}")
        self.address, self.cpus, self.cancel_grace = address, int(cpus), cancel_grace
        self._ray = ray = import_ray()
        self._owns_connection = _connect(ray, address, runtime_env)
        try:
            self.gpus = int(ray.cluster_resources().get("GPU", 0))
            largest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
            self._inbox = ray.remote(num_cpus=0, max_restarts=0)(_Inbox).remote()
            self._remote = ray.remote(max_retries=0)(_run_in_worker)
        except Exception as exc:  # noqa: BLE001 - the cluster answered ray.init but not this: one message
            self._disconnect()
            raise PlintError(f"the Ray cluster at {address!r} did not answer ({_first_line(exc)}): check it with "
                             f"`ray status` ({SETUP_HINT})") from None
        if largest < self.cpus:
            log.warning("each task asks for %d CPUs but no node of the Ray cluster at %r has that many (largest: "
                        "%d): tasks wait until such a node joins; lower PLINT_RAY_CPUS", self.cpus, address, largest)
        self._lock = threading.RLock()
        self._entries: dict[int, _Entry] = {}
        self._ids = itertools.count(1)
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._watch, name="plint-ray-executor", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- Executor
    def submit(self, task: Any, on_report: Callable[[Status], None] | None = None) -> Handle:
        if dataclasses.is_dataclass(task):
            fields = {f.name for f in dataclasses.fields(task)}
            changes = {}
            if "executor" in fields:
                changes["executor"] = self.name  # recorded with the result
            if "store" in fields:  # made here, so that a worker can tell whether it sees the same folder
                changes["store"] = os.path.abspath(task.store)
                try:
                    os.makedirs(changes["store"], exist_ok=True)
                except OSError:
                    pass  # the worker says which folder it cannot see
            task = dataclasses.replace(task, **changes) if changes else task
        handle = Handle(task, self, on_report)
        with self._lock:
            if self._closed:
                raise PlintError("the executor has been shut down")
            entry = _Entry(next(self._ids), handle)
            self._entries[entry.id] = entry
        gpu = _wants_gpu(getattr(task, "device", "cpu"), self.gpus)
        if gpu and self.gpus == 0:
            self._resolve(entry, FAILED, error=f"the {task.label} is to run on a GPU (device "
                                               f"{task.device!r}) but the Ray cluster has none: add a node with a GPU "
                                               "or choose device cpu or auto")
            return handle
        try:
            entry.ref = self._remote.options(num_cpus=self.cpus, num_gpus=1 if gpu else 0,
                                             name=f"plint {getattr(task, 'kind', 'task')}").remote(
                task, self._inbox, entry.id, self.cpus, os.getcwd(), _shared_paths(task))
        except Exception as exc:  # noqa: BLE001 - a task that cannot be submitted fails, not the app
            self._resolve(entry, FAILED, error=f"could not submit the {task.label} to the Ray cluster "
                                               f"({_first_line(exc)})")
            return handle
        self._wake.set()
        return handle

    def place(self, handle: Handle) -> int | None:
        with self._lock:
            waiting = [e for e in sorted(self._entries.values(), key=lambda e: e.id)
                       if not e.started and e.handle.state == QUEUED]
        for i, entry in enumerate(waiting):
            if entry.handle is handle:
                return i + 1
        return None

    def cancel(self, handle: Handle) -> None:
        entry = self._entry(handle)
        if entry is None or entry.ref is None:
            return
        try:
            self._ray.cancel(entry.ref)  # waiting: withdrawn; running: KeyboardInterrupt in the worker
        except Exception as exc:  # noqa: BLE001 - already finished, or the cluster is gone: the thread will tell
            log.info("ray.cancel of %s: %s", handle.task.label, exc)
        if not entry.started:
            self._resolve(entry, CANCELLED)  # it may have just started: interrupted there, it stores nothing
            return
        timer = threading.Timer(self.cancel_grace, self._kill_if_still, args=(entry,))
        timer.daemon = True
        timer.start()

    def shutdown(self, wait: bool = True) -> None:
        """Withdraw waiting tasks, stop running ones (their workers are killed) and disconnect."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            entries = list(self._entries.values())
        for entry in entries:
            entry.handle._cancel_asked.set()
            if entry.ref is not None:
                try:
                    self._ray.cancel(entry.ref, force=entry.started)
                except Exception:  # noqa: BLE001 - finished meanwhile, or the cluster is gone
                    pass
            self._resolve(entry, CANCELLED)
        self._wake.set()
        if wait:
            self._thread.join(5 * POLL_SECONDS + 5)
        try:
            self._ray.kill(self._inbox)
        except Exception:  # noqa: BLE001 - the cluster is gone: so is the actor
            pass
        self._disconnect()

    # ---------------------------------------------------------------- the reading thread
    def _entry(self, handle: Handle) -> _Entry | None:
        with self._lock:
            return next((e for e in self._entries.values() if e.handle is handle), None)

    def _kill_if_still(self, entry: _Entry) -> None:
        if entry.handle.state in FINISHED:
            return
        log.warning("Ray task %s did not stop within %.0f s of Cancel: killing its worker", entry.handle.task.label,
                    self.cancel_grace)
        try:
            self._ray.cancel(entry.ref, force=True)
        except Exception as exc:  # noqa: BLE001 - finished meanwhile
            log.info("ray.cancel(force=True) of %s: %s", entry.handle.task.label, exc)

    def _resolve(self, entry: _Entry, state: str, result: Any = None, error: str | None = None) -> None:
        with self._lock:
            if self._entries.pop(entry.id, None) is None:
                return
        entry.handle._finish(state, result=result, error=error)

    def _watch(self) -> None:
        ray, inbox_alive = self._ray, True
        while True:
            with self._lock:
                if self._closed:
                    return
                pending = {e.ref: e for e in self._entries.values() if e.ref is not None}
            if not pending:
                self._wake.wait(POLL_SECONDS)
                self._wake.clear()
                continue
            try:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                if inbox_alive:
                    try:  # after ray.wait: a finished task flushed its last reports before it returned
                        messages = ray.get(self._inbox.take.remote(POLL_SECONDS), timeout=30)
                    except ray.exceptions.GetTimeoutError:
                        messages = []
                    except ray.exceptions.RayActorError as exc:
                        log.warning("the progress actor of the Ray executor died (%s): no more progress reports", exc)
                        inbox_alive, messages = False, []
                else:
                    messages = []
                    time.sleep(POLL_SECONDS)
                for message in messages:
                    self._message(*message)
                for ref in ready:
                    self._finished(pending[ref], ref)
            except Exception as exc:  # noqa: BLE001 - the connection to the cluster is lost: every task with it
                log.error("lost the Ray cluster: %s", exc)
                for entry in pending.values():
                    self._resolve(entry, FAILED, error=(
                        f"lost the connection to the Ray cluster at {self.address!r} while the "
                        f"{entry.handle.task.label} was queued or running ({_first_line(exc)}): whether it was "
                        "stored is unknown; look in the run history, or try again"))
                time.sleep(POLL_SECONDS)

    def _message(self, task_id: int, kind: str, *args) -> None:
        with self._lock:
            entry = self._entries.get(task_id)
        if entry is None or entry.handle.state in FINISHED:
            return
        if kind == "started":
            entry.started = True
            if entry.handle.state == QUEUED:
                entry.handle._start(args[0])
            else:
                entry.handle.where = args[0]
        elif kind == "progress":
            if entry.handle.state == QUEUED:  # its "started" has not come in yet: a report says it as well
                entry.started = True
                entry.handle._start("a Ray worker")
            entry.handle._report(*args)

    def _finished(self, entry: _Entry, ref) -> None:
        ray, handle = self._ray, entry.handle
        label = handle.task.label
        try:
            kind, *value = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            kind, value = "cancelled", []
        except ray.exceptions.RayTaskError as exc:  # the task never got to run: it could not be unpickled there
            kind, value = "failed", [_task_error(label, exc)]
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError,
                ray.exceptions.OutOfMemoryError, ray.exceptions.LocalRayletDiedError,
                ray.exceptions.RaySystemError) as exc:
            kind, value = ("cancelled", []) if handle.cancel_asked else ("failed", [(
                f"the Ray worker running the {label} stopped unexpectedly ({type(exc).__name__}: for example "
                "killed, out of memory, or its node was lost): nothing of it was stored. Try again, with fewer "
                "training points or a smaller batch if it keeps happening.")])
        except Exception as exc:  # noqa: BLE001 - one message for the page; the server log has it in full
            log.error("Ray task %s failed: %s", label, exc)
            kind, value = "failed", [f"the {label} failed on the Ray cluster ({type(exc).__name__}: "
                                     f"{_first_line(exc)}). Try again; if it keeps failing, report it with the server "
                                     "log."]
        if kind == "done":
            self._resolve(entry, DONE, result=value[0])
        elif kind == "cancelled":
            self._resolve(entry, CANCELLED)
        else:
            self._resolve(entry, FAILED, error=value[0] if value else f"the {label} failed")

    def _disconnect(self) -> None:
        if self._owns_connection:
            try:
                self._ray.shutdown()
            except Exception:  # noqa: BLE001 - nothing more to do
                pass
            self._owns_connection = False


def _connect(ray, address: str, runtime_env: dict | None) -> bool:
    """Connect this process to the cluster; ``False`` if it already was (then it stays as it is)."""
    if ray.is_initialized():
        return False
    _check_reachable(address)
    try:
        ray.init(address=address, runtime_env=runtime_env or None, logging_level=logging.WARNING)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, AuthenticationError, ValueError, RuntimeError …
        raise PlintError(
            f"could not connect to the Ray cluster at PLINT_RAY_ADDRESS={address!r} ({_first_line(exc)}): check that "
            "it runs (`ray status` on its head), the address, and that this process has the cluster's token "
            f"(RAY_AUTH_MODE=token with ~/.ray/auth_token or RAY_AUTH_TOKEN; {SETUP_HINT})") from None
    return True


def _check_reachable(address: str) -> None:
    """A clear error at once when nothing answers at an explicit ``host:port``."""
    if address in ("", "auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # ray.init explains what it expects
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_CHECK_SECONDS):
            pass
    except OSError as exc:
        raise PlintError(f"nothing answers at PLINT_RAY_ADDRESS={address!r} ({exc.strerror or exc}): start the Ray "
                         f"cluster (`ray start --head`) or correct the address ({SETUP_HINT})") from None


def _wants_gpu(device: str, cluster_gpus: int) -> bool:
    return str(device).startswith("cuda") or (device == "auto" and cluster_gpus > 0)


def _shared_paths(task: Any) -> list[str]:
    """The task's run store and those of its input paths that exist here: the worker must see them too."""
    paths = [task.store] if isinstance(getattr(task, "store", None), str) else []
    source = getattr(task, "source", None)
    for name in ("model", "data", "sidecar"):
        value = getattr(source, name, None)
        if value and os.path.exists(value):
            paths.append(str(value))
    return paths


def _task_error(label: str, exc: Exception) -> str:
    text = str(exc)
    if "ModuleNotFoundError" in text or "No module named" in text:
        module = text.split("No module named", 1)[-1].strip().split()[0].strip("'\"") if "No module named" in text \
            else "plint_core"
        return (f"a Ray worker could not import {module!r} to run the {label}: plint's code must be importable on "
                f"every node (run the cluster from the same checkout, install it there, or ship it with "
                f"PLINT_RAY_RUNTIME_ENV; {SETUP_HINT})")
    return f"the {label} could not start on the Ray cluster ({_first_line(exc)})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# ---------------------------------------------------------------------- on the Ray worker
def _run_in_worker(task, inbox, task_id: int, threads: int, cwd: str, paths: list[str]) -> tuple:
    """Run ``task`` as a local worker does; returns ``("done", outcome)``, ``("failed", message)`` or
    ``("cancelled",)``. Progress goes to ``inbox``; its last report is delivered before this returns."""
    import ray

    node = ray.util.get_node_ip_address()
    inbox.put.remote((task_id, "started", f"Ray worker on {node} (pid {os.getpid()})"))
    last = [0.0, None]

    def report(stage: str, fraction: float, detail: Any = None) -> None:
        now = time.monotonic()
        if stage != last[1] or now - last[0] >= REPORT_EVERY_SECONDS or fraction >= 1.0:
            last[0], last[1] = now, stage
            inbox.put.remote((task_id, "progress", stage, fraction, detail))

    try:
        if os.path.isdir(cwd):
            os.chdir(cwd)  # relative paths mean here what they meant to the caller
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise PlintError(f"{missing[0]!r} is not there on the Ray node {node}: the run store and the model and "
                             "data files must be on a file system that every node shares, under the same path "
                             f"({SETUP_HINT})")
        from ..device import set_threads

        set_threads(threads)
        outcome = ("done", task.run(report, threading.Event()))
    except (RunCancelled, KeyboardInterrupt):  # ray.cancel interrupts the task with KeyboardInterrupt
        outcome = ("cancelled",)
    except PlintError as exc:
        outcome = ("failed", str(exc))
    except BaseException as exc:  # noqa: BLE001 - reported as one message, logged here in full
        traceback.print_exc()
        outcome = ("failed", f"the {task.label} failed unexpectedly on Ray node {node} ({type(exc).__name__}: "
                             f"{exc}). Try again; if it keeps failing, report it with the worker's log.")
    try:
        ray.get(inbox.put.remote((task_id, "flush")), timeout=30)
    except Exception:  # noqa: BLE001 - progress is lost, the outcome is not
        pass
    return outcome
