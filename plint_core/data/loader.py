"""Batches of a split for a model: a ``torch.utils.data.DataLoader`` over rows read on demand.

Each batch is one read of the rows it needs (:meth:`plint_core.data.images.Images.stored`),
in the stored dtype and size, plus row-aligned extras (labels, targets); the
conversion to the model's input happens on the device that runs the model
(:class:`plint_core.data.transforms.ModelInput`). The order is either
sequential or, for training, a fresh permutation per epoch drawn from a seeded
``torch.Generator`` — the same order the earlier in-memory loop used, so
results do not change with the way the images are held.

Worker processes (:func:`default_workers`) decode image files in parallel and,
on CUDA, keep the GPU fed; they persist across epochs, and batches go to the
GPU through pinned memory with ``non_blocking`` copies. On Linux they are forked
(:func:`loader_context`), also inside a plint worker, whatever start method made it.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import sys
import re
import threading
import time
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data import Dataset as TorchDataset

from ..device import cpu_quota
from ..env_settings import env_count
from ..errors import PlintError
from .images import FileImages, Images

WORKERS_ENV = "PLINT_LOADER_WORKERS"
"""Environment variable: loader worker processes (``0``: read in the main process)."""
MAX_WORKERS = 4


class RowBatches(TorchDataset):
    """``batch[positions]`` → ``{"images": stored batch, "index": positions, **extras}`` (positions in the view)."""

    def __init__(self, images: Images, **extras: np.ndarray):
        self.images = images
        self.extras = {k: np.asarray(v) for k, v in extras.items()}
        for name, values in self.extras.items():
            if len(values) != len(images):
                raise ValueError(f"extra {name!r} has {len(values)} rows for {len(images)} images")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, positions: list[int]) -> dict[str, torch.Tensor]:
        rows = np.asarray(positions, dtype=np.int64)
        batch = {"images": self.images.stored(rows), "index": torch.from_numpy(rows)}
        for name, values in self.extras.items():
            batch[name] = torch.from_numpy(np.ascontiguousarray(values[rows]))
        return batch


class SequentialBatches(Sampler[list[int]]):
    """Rows ``0..n-1`` in order, ``batch_size`` at a time."""

    def __init__(self, n: int, batch_size: int):
        self.n, self.batch_size = n, batch_size

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, self.n, self.batch_size):
            yield list(range(start, min(start + self.batch_size, self.n)))


class PermutedBatches(Sampler[list[int]]):
    """Each pass: ``torch.randperm(n, generator=generator)`` cut into batches of ``batch_size``."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=self.generator).tolist()
        for start in range(0, self.n, self.batch_size):
            yield order[start:start + self.batch_size]


def default_workers(images: Images, device: torch.device) -> int:
    """Loader workers for ``images`` on ``device``: ``$PLINT_LOADER_WORKERS`` if set; else none for arrays
    on the CPU (a read is a cheap copy), and for image files or a GPU one per spare usable core
    (:func:`usable_cores`), at most 4."""
    value = env_count(WORKERS_ENV, minimum=0, what="workers", hint="0 = read in the main process")
    if value is not None:
        return value
    if device.type != "cuda" and not isinstance(images, FileImages):
        return 0
    return max(0, min(MAX_WORKERS, usable_cores() - 1))


def loader_context():
    """The start method of loader workers: ``fork`` on Linux, else the platform's default (``None``).

    A process started with ``spawn`` or ``forkserver`` (a plint worker, :mod:`plint_core.runs.local`) hands that
    method on as the default of its own children, and each spawned loader worker imports torch and the engine again (re-running
    the main module too) before its first batch: 2-4 s per loader, and a run makes one for every pass over
    validation, test and the probes. A forked one starts from the worker's memory in milliseconds (an image
    folder's 1-epoch run of 36 images: 36 s through a worker with spawned loaders, 7 s with forked ones, bench/RESULTS.md). Linux's
    default, and what torch documents for its loaders; on macOS forking a process with threads is unsafe, so
    the default stays."""
    return multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by the container's CPU quota
    (:func:`plint_core.device.cpu_quota`; a hosted container often sees every core of its host)."""
    seen = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cpu_quota()
    return min(seen, quota) if quota else seen


def batch_loader(images: Images, batch_size: int, device: torch.device, *, generator: torch.Generator | None = None,
                 workers: int | None = None, **extras: np.ndarray) -> DataLoader:
    """A ``DataLoader`` of :class:`RowBatches`: sequential, or permuted anew each pass with ``generator``."""
    n = len(images)
    sampler = SequentialBatches(n, batch_size) if generator is None else PermutedBatches(n, batch_size, generator)
    workers = default_workers(images, device) if workers is None else workers
    # The loader draws its workers' base seed at each pass (only the first, with persistent workers) from its
    # own generator: left to torch's global one, that draw would shift the dropout masks of training with the
    # number of workers.
    return DataLoader(RowBatches(images, **extras), batch_size=None, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0,
                      multiprocessing_context=loader_context() if workers > 0 else None,
                      prefetch_factor=2 if workers > 0 else None, generator=torch.Generator().manual_seed(0),
                      worker_init_fn=functools.partial(_exit_with_owner, os.getpid()) if workers > 0 else None)


def _exit_with_owner(owner: int, worker_id: int) -> None:
    """In a loader worker: end this process as soon as the process that made the loader is gone.

    torch's own check compares the parent's pid with the one the worker saw when
    it started; a worker still importing torch when its owner was killed (a
    cancelled job, a killed server) saw init's pid already and would wait forever,
    holding its memory. This compares with the owner's pid, passed in, once a second.
    """
    def watch() -> None:
        while os.getppid() == owner:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="plint-loader-owner-watch", daemon=True).start()


def iterate(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    """The loader's batches; a :class:`PlintError` raised in a worker (an unreadable image) arrives as its own
    one-line message rather than with the worker's traceback."""
    try:
        yield from loader
    except PlintError as exc:
        text = str(exc)
        found = re.findall(r"PlintError: (.+)", text)
        if found:
            raise PlintError(found[-1].strip()) from None
        raise
