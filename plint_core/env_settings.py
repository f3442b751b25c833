"""Whole-number settings read from ``PLINT_*`` environment variables.

Every count a deployment sets through the environment (worker processes, loader workers, Ray CPUs, the points
the map draws, torch threads) is read by :func:`env_count`, so that a malformed value gets the same one-line
message everywhere: the variable, the value given, what it counts and the least value it takes.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

from .errors import PlintError

__all__ = ["env_count"]


def env_count(name: str, *, minimum: int, what: str, default: int | None = None,
              env: Mapping[str, str] | None = None, hint: str = "") -> int | None:
    """The whole number ``$name`` holds, or ``default`` where it is unset or blank.

    Parameters
    ----------
    name
        The variable, e.g. ``PLINT_WORKERS``.
    minimum
        The least value accepted (0 or 1 in plint).
    what
        What the number counts, for the message: ``"worker processes"`` gives
        ``PLINT_WORKERS='two' is not a number of worker processes: ...``.
    default
        Returned where the variable is unset or blank.
    env
        Where to read; ``os.environ`` by default.
    hint
        Said after the rule, in brackets, e.g. ``"0 = off"`` or ``"unset: 30,000"``.

    Raises
    ------
    PlintError
        Where the value is not a whole number of at least ``minimum``.
    """
    text = (os.environ if env is None else env).get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        rule = "0 or a positive whole number" if minimum == 0 else f"a whole number of {minimum} or more"
        raise PlintError(f"{name}={text!r} is not a number of {what}: give {rule}" + (f" ({hint})" if hint else ""))
    return value
