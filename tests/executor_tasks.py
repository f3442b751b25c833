"""Small tasks for the executor tests; a module of its own so that spawned workers can import them."""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from plint_core.errors import PlintError, RunCancelled


@dataclass(frozen=True)
class Sleep:
    """Logs ``start <name> <pid>`` to ``log``, then works ``seconds`` in 0.05 s steps, reporting and checking
    cancel; returns ``name``."""

    name: str
    log: str
    seconds: float = 0.3
    kind: str = field(default="test", init=False)

    @property
    def label(self) -> str:
        return f"task {self.name}"

    def run(self, report, cancel: threading.Event) -> str:
        with Path(self.log).open("a") as f:
            f.write(f"start {self.name} {os.getpid()}\n")
        steps = max(1, round(self.seconds / 0.05))
        for i in range(steps):
            if cancel.is_set():
                raise RunCancelled(f"{self.name} cancelled")
            time.sleep(0.05)
            report("working", (i + 1) / steps, {"step": i + 1})
        return self.name


@dataclass(frozen=True)
class Stubborn:
    """Ignores cancel: sleeps ``seconds``."""

    seconds: float = 60.0
    kind: str = field(default="test", init=False)
    label: str = "stubborn task"

    def run(self, report, cancel) -> str:
        report("ignoring", 0.5)
        time.sleep(self.seconds)
        return "finished anyway"


@dataclass(frozen=True)
class Fail:
    """Raises a PlintError (``expected``) or a ZeroDivisionError, or kills its own process (``crash``)."""

    how: str
    kind: str = field(default="test", init=False)
    label: str = "failing task"

    def run(self, report, cancel) -> str:
        if self.how == "expected":
            raise PlintError("the spec moves class 'cat', which the data does not have")
        if self.how == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        return str(1 / 0)


@dataclass(frozen=True)
class Deaf:
    """Ignores cancel and interrupts alike (a task stuck where Ray's ``KeyboardInterrupt`` cannot stop it): sleeps
    ``seconds`` in steps, reporting ``deaf`` each time it is interrupted."""

    seconds: float = 60.0
    kind: str = field(default="test", init=False)
    label: str = "deaf task"

    def run(self, report, cancel) -> str:
        report("deaf", 0.5)
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline:
            try:
                time.sleep(0.05)
            except KeyboardInterrupt:
                report("deaf", 0.6)
        return "finished anyway"


_held: list[bytes] = []


@dataclass(frozen=True)
class Hold:
    """Allocates ``mb`` MB (written, so resident) and keeps it for the rest of its process; returns its pid."""

    mb: int
    kind: str = field(default="test", init=False)
    label: str = "memory-holding task"

    def run(self, report, cancel) -> int:
        _held.append(b"x" * (self.mb << 20))
        return os.getpid()


@dataclass(frozen=True)
class Pid:
    """Returns its process id."""

    kind: str = field(default="test", init=False)
    label: str = "pid task"

    def run(self, report, cancel) -> int:
        return os.getpid()


@dataclass(frozen=True)
class Resident:
    """Returns its process's resident bytes and id."""

    kind: str = field(default="test", init=False)
    label: str = "resident-memory task"

    def run(self, report, cancel) -> tuple[int, int]:
        from plint_core.device import resident_bytes

        return resident_bytes(), os.getpid()


@dataclass(frozen=True)
class Inspect:
    """Returns what the worker sees: ``$name``, its parent's pid, and the start method of a loader the engine
    makes for image files (with one loader worker) in this worker."""

    name: str
    image: str
    kind: str = field(default="test", init=False)
    label: str = "inspect task"

    def run(self, report, cancel) -> dict:
        import torch

        from plint_core.data.images import FileImages
        from plint_core.data.loader import batch_loader

        images = FileImages(paths=(Path(self.image),), shown=("one.png",), channels=1, size=(8, 8))
        loader = batch_loader(images, 1, torch.device("cpu"), workers=1)
        batches = [b["images"].shape for b in loader]
        return {"value": os.environ.get(self.name), "parent": os.getppid(),
                "loader": loader.multiprocessing_context.get_start_method(), "batches": len(batches)}


@dataclass(frozen=True)
class Chatty:
    """Reports as fast as it can (a new stage each time, so that every report is sent) for ``seconds``."""

    seconds: float = 120.0
    kind: str = field(default="test", init=False)
    label: str = "chatty task"

    def run(self, report, cancel) -> str:
        end, i = time.monotonic() + self.seconds, 0
        while time.monotonic() < end and not cancel.is_set():
            report(f"chat {i % 2}", 0.5)
            i += 1
        return "done"
