"""User-facing errors.

Every problem a user can cause (a bad file, an unknown class, a NaN in a spec)
is raised as a :class:`PlintError` whose message names the problem and what to
do about it. The CLI turns it into one line and exit code 2; the app shows it
with ``st.error``. Anything else is a bug.
"""
from __future__ import annotations


class PlintError(ValueError):
    """A problem with the user's input, with a message meant for that user."""


class RunCancelled(RuntimeError):
    """Raised inside a fine-tuning run when its cancel event is set."""
