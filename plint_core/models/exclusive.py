"""One user at a time of a shared classifier module.

The app keeps one :class:`~plint_core.models.spec.ModelBundle` per project and
serves every browser session with it. A forward pass moves the module to the
compute device, changes its memory format and registers a hook on the latent
layer; a fine-tune copies it. Two of these at once on one module would mix
their hooks and devices, so each holds the module's lock while it works.
Different modules never wait for each other.
"""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from typing import Iterator

from torch import nn

__all__ = ["exclusive"]

_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


@contextmanager
def exclusive(module: nn.Module) -> Iterator[nn.Module]:
    """Hold ``module``'s lock (re-entrant within a thread) while the block runs; yields ``module``."""
    with _GUARD:
        lock = _LOCKS.get(module)
        if lock is None:
            lock = _LOCKS[module] = threading.RLock()
    with lock:
        yield module
