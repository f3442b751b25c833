"""Device resolution (``auto`` picks CUDA when it is available, else the CPU) and torch's CPU threads."""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import PlintError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name`` (``auto``, ``cpu`` or ``cuda``)."""
    if name not in DEVICE_CHOICES:
        raise PlintError(f"unknown device {name!r}: use one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PlintError("device 'cuda' was asked for but no CUDA GPU is available: use --device cpu or auto")
    return torch.device(name)


def cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """CPUs this container may use by its cgroup quota (rounded up), or ``None`` if unlimited or unknown.

    Hosted containers (Streamlit Community Cloud among them) often see all of
    the host's cores but may only use a share of them; torch sizes its thread
    pool by the cores it sees, and oversubscribed threads crawl.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # cgroup v2: "max 100000" or "200000 100000"
        if quota == "max":
            return None
        return max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else max(1, -(-quota // period))
    except (OSError, ValueError):
        return None


def memory_limit(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes of memory this container may use by its cgroup, or ``None`` if unlimited or unknown."""
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):  # cgroup v2, then v1
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            continue
        return None if value >= 1 << 60 else value  # v1 writes a huge number for "unlimited"
    return None


def choose_threads(requested: int, current: int, quota: int | None) -> int:
    """Torch CPU threads to use: ``requested`` if > 0, else ``current`` capped at the CPU ``quota``."""
    if requested:
        return requested
    return min(current, quota) if quota else current


def set_threads(requested: int = 0) -> int:
    """Set torch's thread count by :func:`choose_threads` (``requested`` 0 = automatic); returns it."""
    threads = choose_threads(requested, torch.get_num_threads(), cpu_quota())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def autocast_dtype(device: torch.device, amp: bool | None = None) -> torch.dtype | None:
    """The dtype of automatic mixed precision on ``device``, or ``None`` for full float32.

    ``amp=None`` (the default) means on for CUDA, off for the CPU. On CUDA it is
    bfloat16 where the GPU supports it (Ampere and later), else float16 (which
    needs a gradient scaler when training); on the CPU, asked for explicitly, bfloat16.
    """
    on = device.type == "cuda" if amp is None else bool(amp)
    if not on:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16


def precision_name(dtype: torch.dtype | None) -> str:
    """``float32``, ``bfloat16`` or ``float16``: how a computation ran, for result files."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def trim_memory() -> None:
    """Hand freed memory back to the operating system after a stage of a long job.

    A training run or a latents pass frees its activations when it ends, but
    glibc's allocator keeps the pages, so a long-lived process (the app's
    server) would stay at the stage's peak resident memory. ``malloc_trim(0)``
    returns them (a no-op where the C library has no such call).
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def resident_bytes(status: Path = Path("/proc/self/status")) -> int | None:
    """This process's resident memory (``VmRSS``) in bytes; ``None`` where ``/proc`` does not say."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
