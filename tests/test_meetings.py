"""plint_core.meetings: a meeting's file, who may publish, and when a meeting is over."""
from __future__ import annotations

import json

import pytest

from plint_core.errors import PlintError
from plint_core.meetings import IDLE_SECONDS, KEEP_SECONDS, MeetingStore, check_id


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_publish_then_read_from_another_store_on_the_same_folder(tmp_path):
    clock = Clock()
    presenter = MeetingStore(tmp_path, clock=clock)
    meeting_id, key = presenter.start()
    check_id(meeting_id)
    assert presenter.read(meeting_id).version == 0
    clock.now += 5
    presenter.publish(meeting_id, key, {"page": "embedding", "selection": [3, 5, 8]})
    follower = MeetingStore(tmp_path, clock=clock)  # another session, or another server on the same store
    meeting = follower.read(meeting_id)
    assert (meeting.version, meeting.state, meeting.updated) == (1, {"page": "embedding", "selection": [3, 5, 8]},
                                                                  clock.now)
    # an unchanged view is not a new version, and does not touch the file
    stamp = follower.stamp(meeting_id)
    clock.now += 5
    assert presenter.publish(meeting_id, key, {"page": "embedding", "selection": [3, 5, 8]}).version == 1
    assert follower.stamp(meeting_id) == stamp
    presenter.publish(meeting_id, key, {"page": "compare"})
    assert follower.read(meeting_id).version == 2 and follower.stamp(meeting_id) != stamp


def test_the_presenter_key_is_needed_to_publish_or_end(tmp_path):
    store = MeetingStore(tmp_path)
    meeting_id, key = store.start()
    assert store.is_presenter(meeting_id, key) and not store.is_presenter(meeting_id, "guess")
    assert not store.is_presenter("aaaaaaaaaa", key)
    with pytest.raises(PlintError, match="only meeting .* presenter can change it"):
        store.publish(meeting_id, "guess", {"page": "model"})
    with pytest.raises(PlintError, match="only meeting .* presenter"):
        store.end(meeting_id, "guess")
    assert store.read(meeting_id).version == 0  # nothing changed
    raw = json.loads(store.path(meeting_id).read_text())
    assert raw["key"] == key  # stored beside the state; followers are only ever handed Meeting objects
    assert "key" not in vars(store.read(meeting_id))


def test_meetings_are_separate(tmp_path):
    store = MeetingStore(tmp_path)
    (a, key_a), (b, key_b) = store.start(), store.start()
    assert a != b and key_a != key_b
    store.publish(a, key_a, {"page": "embedding"})
    assert store.read(b).state == {} and store.read(a).state == {"page": "embedding"}
    with pytest.raises(PlintError):
        store.publish(b, key_a, {"page": "embedding"})


def test_ended_idle_unknown_and_malformed_meetings_say_so(tmp_path):
    clock = Clock()
    store = MeetingStore(tmp_path, clock=clock)
    meeting_id, key = store.start()
    store.end(meeting_id, key)
    with pytest.raises(PlintError, match="has ended: its presenter ended it"):
        store.read(meeting_id)
    with pytest.raises(PlintError, match="has ended: start a new one"):
        store.publish(meeting_id, key, {"page": "model"})

    idle_id, idle_key = store.start()
    clock.now += IDLE_SECONDS - 1
    store.read(idle_id)  # not yet
    clock.now += 2
    with pytest.raises(PlintError, match="nothing changed in it for 60 minutes"):
        store.read(idle_id)
    with pytest.raises(PlintError, match="has ended: start a new one"):  # its presenter is told too
        store.publish(idle_id, idle_key, {"page": "model"})

    with pytest.raises(PlintError, match="there is no meeting zzzzzzzzzz: check the meeting link"):
        store.read("zzzzzzzzzz")
    assert store.stamp("zzzzzzzzzz") == 0
    for bad in ("", "short", "../../etc/passwd", "ABCDEFGHIJ", "abcdefghij/"):
        with pytest.raises(PlintError, match="is not a meeting id"):
            store.read(bad)
    store.path(meeting_id).write_text("{half a file")
    with pytest.raises(PlintError, match="could not be read"):
        store.read(meeting_id)


def test_a_failed_write_leaves_the_published_state(tmp_path, monkeypatch):
    store = MeetingStore(tmp_path)
    meeting_id, key = store.start()
    store.publish(meeting_id, key, {"page": "embedding"})

    def broken(path, obj):
        raise OSError("disk full")

    monkeypatch.setattr("plint_core.meetings.write_json_atomic", broken)
    with pytest.raises(OSError):
        store.publish(meeting_id, key, {"page": "compare"})
    assert store.read(meeting_id).state == {"page": "embedding"}
    with pytest.raises(TypeError):  # only JSON is published
        MeetingStore(tmp_path).publish(meeting_id, key, {"page": object()})


def test_sweep_removes_only_meetings_over_for_a_week(tmp_path):
    clock = Clock()
    store = MeetingStore(tmp_path, clock=clock)
    old_id, old_key = store.start()
    store.end(old_id, old_key)
    clock.now += KEEP_SECONDS + 1
    recent_id, _ = store.start()  # start() sweeps
    assert not store.path(old_id).exists() and store.path(recent_id).exists()
    assert store.sweep() == 0
