"""Meetings: one presenter's view, published for followers to show.

A meeting is one small JSON file under the run store, ``meetings/<id>.json``, holding what the presenter's
session shows (its *state*: a plain JSON object the app fills), a version that grows with every change, and when
it last changed. The presenter's session publishes its state after each of its runs (:meth:`MeetingStore.publish`,
an atomic rename, so a follower never reads half a file); a follower polls the file's time stamp
(:meth:`MeetingStore.stamp`, one ``stat``) and reads the state when it changed.

Why a file and not a server of its own: every session of one Streamlit server (and every server that shares the
run store) already shares that folder; a file written atomically needs no extra process, port or dependency, and
outlives a page reload or a server restart. Polling a ``stat`` twice a second per follower is cheap next to a
Streamlit rerun.

Who may publish: :meth:`MeetingStore.start` returns a presenter key (random, 128 bits) beside the meeting id.
The id alone lets a session follow; publishing and ending need the key. A meeting ends when its presenter ends it
(:meth:`MeetingStore.end`) or after :data:`IDLE_SECONDS` without a change; an ended meeting's file stays (so a
follower learns that it ended, not that it never existed) until :meth:`MeetingStore.sweep` removes it a week later.

Example::

    store = MeetingStore("runs")
    meeting_id, key = store.start()
    store.publish(meeting_id, key, {"page": "embedding", "selection": [3, 5, 8]})
    store.read(meeting_id).state["selection"]   # [3, 5, 8], in any session
    store.end(meeting_id, key)
"""
from __future__ import annotations

import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .atomic import write_json_atomic
from .errors import PlintError

IDLE_SECONDS = 3600.0
"""A meeting whose presenter changed nothing for this long (1 hour) has ended."""
KEEP_SECONDS = 7 * 24 * 3600.0
"""Ended meetings' files are swept this long (a week) after their last change."""
FOLDER = "meetings"
_ID = re.compile(r"^[a-z0-9]{10}$")
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l: ids are read aloud in a meeting


@dataclass(frozen=True)
class Meeting:
    """One meeting as stored: its id, the presenter's state, and its life."""

    id: str
    version: int
    """Grows by one with every published change; 0: nothing published yet."""
    state: dict
    """What the presenter's session shows (the app's own fields)."""
    started: float
    """Unix time the meeting started."""
    updated: float
    """Unix time of the last change (start, publish or end)."""
    ended: bool
    """Ended by its presenter."""

    def is_over(self, now: float, idle_seconds: float = IDLE_SECONDS) -> bool:
        """Ended by its presenter, or idle for ``idle_seconds``."""
        return self.ended or now - self.updated > idle_seconds


class MeetingStore:
    """The meetings under a run store's ``root`` (``root/meetings/``).

    Parameters
    ----------
    root: the run store's folder (:class:`plint_core.store.RunStore`'s ``root``).
    idle_seconds: a meeting unchanged this long has ended (default :data:`IDLE_SECONDS`).
    clock: the time, in Unix seconds (default :func:`time.time`; tests pass their own).
    """

    def __init__(self, root: str | Path, idle_seconds: float = IDLE_SECONDS, clock: Callable[[], float] = time.time):
        self.folder = Path(root) / FOLDER
        self.idle_seconds = float(idle_seconds)
        self.clock = clock

    def path(self, meeting_id: str) -> Path:
        return self.folder / f"{check_id(meeting_id)}.json"

    def start(self) -> tuple[str, str]:
        """Open a new meeting: ``(meeting id, presenter key)``. Sweeps meetings ended long ago."""
        self.sweep()
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            meeting_id = "".join(secrets.choice(_ALPHABET) for _ in range(10))
            if not self.path(meeting_id).exists():
                break
        key = secrets.token_urlsafe(16)
        now = self.clock()
        self._write(meeting_id, {"id": meeting_id, "key": key, "version": 0, "state": {}, "started": now,
                                 "updated": now, "ended": False})
        return meeting_id, key

    def read(self, meeting_id: str) -> Meeting:
        """The meeting as stored now; raises :class:`PlintError` for an unknown id or a meeting that is over."""
        raw = self._raw(meeting_id)
        meeting = _meeting(raw)
        if meeting.ended:
            raise PlintError(f"meeting {meeting_id} has ended: its presenter ended it. Ask for a new meeting link, "
                             "or go on exploring on your own")
        if meeting.is_over(self.clock(), self.idle_seconds):
            raise PlintError(f"meeting {meeting_id} has ended: nothing changed in it for "
                             f"{self.idle_seconds / 60:.0f} minutes. Ask for a new meeting link, or go on exploring "
                             "on your own")
        return meeting

    def stamp(self, meeting_id: str) -> int:
        """When the meeting's file last changed (nanoseconds; one ``stat``): what a follower polls before it
        reads. ``0`` when there is no such file (:meth:`read` then says why)."""
        try:
            return self.path(meeting_id).stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def publish(self, meeting_id: str, key: str, state: dict) -> Meeting:
        """Store ``state`` as the meeting's (a new version where it differs from the stored one)."""
        raw = self._owned(meeting_id, key)
        state = json.loads(json.dumps(state))  # JSON only, and a copy
        if raw["state"] == state and raw["version"]:
            return _meeting(raw)
        raw.update(state=state, version=int(raw["version"]) + 1, updated=self.clock())
        self._write(meeting_id, raw)
        return _meeting(raw)

    def end(self, meeting_id: str, key: str) -> None:
        """End the meeting (its followers are told, and keep their view as their own)."""
        raw = self._owned(meeting_id, key)
        raw.update(ended=True, updated=self.clock())
        self._write(meeting_id, raw)

    def is_presenter(self, meeting_id: str, key: str) -> bool:
        """Whether ``key`` is the meeting's presenter key (``False`` for an unknown id)."""
        try:
            raw = self._raw(meeting_id)
        except PlintError:
            return False
        return hmac.compare_digest(str(raw.get("key", "")), str(key))

    def sweep(self) -> int:
        """Remove the files of meetings over for :data:`KEEP_SECONDS`; returns how many."""
        if not self.folder.is_dir():
            return 0
        removed, now = 0, self.clock()
        for path in self.folder.glob("*.json"):
            try:
                updated = float(json.loads(path.read_text())["updated"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if now - updated > KEEP_SECONDS:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    # --------------------------------------------------------------------------------------------------------
    def _raw(self, meeting_id: str) -> dict:
        path = self.path(meeting_id)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise PlintError(f"there is no meeting {meeting_id}: check the meeting link, or ask the presenter for "
                             "it again") from None
        except (OSError, ValueError) as exc:
            raise PlintError(f"meeting {meeting_id} could not be read ({exc}): ask the presenter to start a new "
                             "one") from None

    def _owned(self, meeting_id: str, key: str) -> dict:
        raw = self._raw(meeting_id)
        if not hmac.compare_digest(str(raw.get("key", "")), str(key)):
            raise PlintError(f"only meeting {meeting_id}'s presenter can change it: this session follows it")
        if _meeting(raw).is_over(self.clock(), self.idle_seconds):
            raise PlintError(f"meeting {meeting_id} has ended: start a new one to present again")
        return raw

    def _write(self, meeting_id: str, raw: dict) -> None:
        write_json_atomic(self.path(meeting_id), raw)


def check_id(meeting_id: str) -> str:
    """``meeting_id`` if it has a meeting id's form (10 lower-case letters and digits), else a clear error."""
    if not isinstance(meeting_id, str) or not _ID.match(meeting_id):
        raise PlintError(f"{meeting_id!r} is not a meeting id (10 letters and digits, as in the meeting link): "
                         "check the link")
    return meeting_id


def _meeting(raw: dict[str, Any]) -> Meeting:
    return Meeting(id=raw["id"], version=int(raw["version"]), state=dict(raw["state"]), started=float(raw["started"]),
                   updated=float(raw["updated"]), ended=bool(raw["ended"]))
