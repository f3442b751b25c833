"""Which executor runs the long jobs, from the environment.

``PLINT_EXECUTOR`` is ``local`` (the default: worker processes on this
machine, :class:`~plint_core.runs.local.LocalExecutor`) or ``ray`` (tasks on a
Ray cluster, :class:`~plint_core.runs.ray_executor.RayExecutor`, configured by
``PLINT_RAY_ADDRESS``, ``PLINT_RAY_CPUS`` and ``PLINT_RAY_RUNTIME_ENV``). The
app and the command line both make theirs with :func:`make_executor`; Ray is
imported only when it is chosen.
"""
from __future__ import annotations

import json
import os

from ..env_settings import env_count
from ..errors import PlintError
from .executor import Executor

__all__ = ["EXECUTORS", "EXECUTOR_ENV", "RAY_ADDRESS_ENV", "RAY_CPUS_ENV", "RAY_RUNTIME_ENV_ENV", "executor_kind",
           "make_executor", "ray_settings"]

EXECUTOR_ENV = "PLINT_EXECUTOR"
"""Environment variable: ``local`` or ``ray``."""
RAY_ADDRESS_ENV = "PLINT_RAY_ADDRESS"
"""Environment variable: the cluster to connect to (``auto``, ``host:6379``, ``ray://host:10001``)."""
RAY_CPUS_ENV = "PLINT_RAY_CPUS"
"""Environment variable: CPUs (and torch threads) of each Ray task."""
RAY_RUNTIME_ENV_ENV = "PLINT_RAY_RUNTIME_ENV"
"""Environment variable: a JSON object passed to ``ray.init`` as ``runtime_env``."""
EXECUTORS = ("local", "ray")


def executor_kind() -> str:
    """``$PLINT_EXECUTOR`` (``local`` if unset)."""
    text = os.environ.get(EXECUTOR_ENV, "").strip()
    kind = text.lower() or "local"
    if kind not in EXECUTORS:
        raise PlintError(f"{EXECUTOR_ENV}={text!r} is not an executor: use one of {', '.join(EXECUTORS)}")
    return kind


def ray_settings() -> dict:
    """The keyword arguments of :class:`~plint_core.runs.ray_executor.RayExecutor` from the environment:
    ``address`` (default ``auto``), ``cpus`` (default 1) and ``runtime_env`` (default none)."""
    address = os.environ.get(RAY_ADDRESS_ENV, "").strip() or "auto"
    cpus = env_count(RAY_CPUS_ENV, minimum=1, what="CPUs", default=1)
    text = os.environ.get(RAY_RUNTIME_ENV_ENV, "").strip()
    runtime_env = None
    if text:
        try:
            runtime_env = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PlintError(f"{RAY_RUNTIME_ENV_ENV} is not valid JSON ({exc.msg} at character {exc.pos}): give a "
                             'JSON object such as {"working_dir": "/srv/plint"}') from None
        if not isinstance(runtime_env, dict):
            raise PlintError(f"{RAY_RUNTIME_ENV_ENV} must be a JSON object such as "
                             '{"working_dir": "/srv/plint"}, not ' + type(runtime_env).__name__)
    return {"address": address, "cpus": cpus, "runtime_env": runtime_env}


def make_executor(slots: int | None = None, *, threads: int | None = None) -> Executor:
    """The executor ``$PLINT_EXECUTOR`` names.

    Parameters
    ----------
    slots: int, optional
        Worker processes of a local executor (default ``$PLINT_WORKERS``); ignored for Ray.
    threads: int, optional
        Torch threads of each local worker (default: the cores less one, shared out); a Ray task's threads are
        its ``$PLINT_RAY_CPUS``.

    Raises :class:`~plint_core.errors.PlintError` for an unknown executor, or when Ray is chosen but not
    installed or its cluster cannot be reached.
    """
    if executor_kind() == "local":
        from .local import LocalExecutor

        return LocalExecutor(slots, threads=threads)
    settings = ray_settings()
    from .ray_executor import RayExecutor

    return RayExecutor(**settings)
