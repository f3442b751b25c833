"""The run store: keys, atomic publication, list/load/delete, killed runs leave nothing finished."""
from __future__ import annotations

import json

import pytest

from plint_core.atomic import write_json_atomic
from plint_core.errors import PlintError
from plint_core.store import RESULT, RunStore, make_key


def _fill(result: dict):
    def fill(tmp):
        (tmp / "weights.bin").write_bytes(b"x" * 10)
        write_json_atomic(tmp / RESULT, result)
    return fill


def test_key_is_stable_and_order_independent():
    assert make_key({"a": 1, "b": [1, 2]}) == make_key({"b": [1, 2], "a": 1})
    assert make_key({"a": 1}) != make_key({"a": 2})
    assert len(make_key({})) == 20


def test_write_list_load_delete(tmp_path):
    store = RunStore(tmp_path)
    store.write(store.run_dir("r1"), _fill({"run_id": "r1", "created": "2026-01-01T00:00:00"}))
    store.write(store.run_dir("r2"), _fill({"run_id": "r2", "created": "2026-02-01T00:00:00"}))
    assert [r["run_id"] for r in store.list_runs()] == ["r2", "r1"]
    assert store.load_run("r1")["run_id"] == "r1" and store.has_run("r1")
    store.delete_run("r1")
    assert not store.has_run("r1") and [r["run_id"] for r in store.list_runs()] == ["r2"]
    with pytest.raises(PlintError, match="no finished run"):
        store.load_run("r1")
    with pytest.raises(PlintError, match="not a run id"):
        store.run_dir("../etc")


def test_a_run_killed_half_way_leaves_nothing_that_looks_finished(tmp_path):
    store = RunStore(tmp_path)

    def dies(tmp):
        (tmp / "weights.bin").write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.write(store.run_dir("r3"), dies)
    assert not store.has_run("r3") and store.list_runs() == []
    assert [p.name for p in (tmp_path / "runs").iterdir()] == []


def test_rewriting_replaces_whole_folder(tmp_path):
    store = RunStore(tmp_path)
    store.write(store.run_dir("r"), _fill({"run_id": "r", "v": 1}))
    store.write(store.run_dir("r"), _fill({"run_id": "r", "v": 2}))
    assert json.loads((store.run_dir("r") / RESULT).read_text())["v"] == 2
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]


def test_leftovers_of_killed_writes_are_swept_in_every_part_of_the_store(tmp_path):
    """A server killed mid-write leaves ``.tmp-*`` staging (and ``.trash-*``) folders in latents/, embeddings/ or
    runs/; the next write there removes the stale ones and leaves a live write's (young) staging alone."""
    import os
    import time

    from plint_core.store import STALE_SECONDS

    store = RunStore(tmp_path)
    old = time.time() - STALE_SECONDS - 60
    for kind in ("latents", "embeddings", "runs"):
        for name in (".tmp-k-dead", ".trash-k-1-dead", ".tmp-k-live"):
            (tmp_path / kind / name).mkdir(parents=True)
            ((tmp_path / kind / name) / "train.npy").write_bytes(b"x" * 100)
            if "dead" in name:
                os.utime(tmp_path / kind / name, (old, old))
    store.write(store.latents_dir("k2"), _fill({}))
    store.write(store.embedding_dir("k2"), _fill({}))
    store.write(store.run_dir("r"), _fill({"run_id": "r"}))
    for kind, final in (("latents", "k2"), ("embeddings", "k2"), ("runs", "r")):
        assert sorted(p.name for p in (tmp_path / kind).iterdir()) == [".tmp-k-live", final]


def test_concurrent_rewrites_of_one_folder_all_succeed(tmp_path):
    """Two sessions of one server finishing the same key at once: both publish, one folder remains whole."""
    import threading

    store = RunStore(tmp_path)
    store.write(store.run_dir("r"), _fill({"run_id": "r", "v": 0}))
    errors = []
    start = threading.Barrier(8)

    def rewrite(v):
        start.wait()
        try:
            for _ in range(20):
                store.write(store.run_dir("r"), _fill({"run_id": "r", "v": v}))
        except Exception as exc:  # noqa: BLE001 - collected and asserted
            errors.append(exc)

    threads = [threading.Thread(target=rewrite, args=(v,)) for v in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert json.loads((store.run_dir("r") / RESULT).read_text())["v"] in range(1, 9)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["r"]
